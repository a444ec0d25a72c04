"""A background response's stream, cut, read again with the openai SDK
(``responses.retrieve(id, stream=True, starting_after=N)``) on another front, after the front
that streamed it was killed: the events after N arrive exactly once, then the run's end."""

from __future__ import annotations

import os
import signal

import openai
import pytest

from tests.integration.conftest import FAULTY
from tests.integration.test_responses import poll

pytestmark = pytest.mark.usefixtures("faulty_worker")  # 20 ms a token: the cut comes mid-run


def test_a_cut_stream_resumes_on_another_front_after_its_front_died(stack, openai_client):
    other = stack.front()
    process = stack.processes[-1]
    client = openai.OpenAI(base_url=f"{other}/v1", api_key="EMPTY", max_retries=0)
    stream = client.responses.create(
        model=FAULTY,
        input="Write forever.",
        max_output_tokens=80,
        background=True,
        stream=True,
        temperature=0,
    )
    seen = []
    for event in stream:
        seen.append(event)
        if sum(e.type == "response.output_text.delta" for e in seen) == 5:
            break
    stream.close()
    os.killpg(process.pid, signal.SIGKILL)  # the front that streamed it is gone
    response_id, after = seen[0].response.id, seen[-1].sequence_number

    rest = list(openai_client.responses.retrieve(response_id, stream=True, starting_after=after))
    numbers = [e.sequence_number for e in seen + rest]
    assert numbers == list(range(len(numbers)))  # each event once, none missing
    assert rest[-1].type in ("response.completed", "response.incomplete")
    text = "".join(e.delta for e in seen + rest if e.type == "response.output_text.delta")
    assert text == poll(openai_client, response_id).output_text

    # From the start, the same stream again.
    again = list(openai_client.responses.retrieve(response_id, stream=True))
    assert [(e.sequence_number, e.type) for e in again] == [
        (e.sequence_number, e.type) for e in seen + rest
    ]


def test_only_a_background_response_is_streamed_again(openai_client):
    foreground = openai_client.responses.create(model=FAULTY, input="Hi", max_output_tokens=2)
    with pytest.raises(openai.BadRequestError) as refused:
        list(openai_client.responses.retrieve(foreground.id, stream=True))
    assert refused.value.body["param"] == "stream"
    with pytest.raises(openai.NotFoundError):
        list(openai_client.responses.retrieve("resp_nothing", stream=True))
