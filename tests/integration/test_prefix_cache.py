"""The prefix cache seen by clients: a request that repeats a long system prompt reports the
reused tokens as ``cached_tokens``, in chat and completions usage (streamed too) and in the
Responses API's ``input_tokens_details``, with the same greedy reply as the first time."""

import pytest

from tests.integration.conftest import TOOLS

pytestmark = pytest.mark.usefixtures("tools_worker")

SYSTEM = "You answer questions about message queues, briefly and kindly. " * 6


def test_a_repeated_system_prompt_is_reported_as_cached(openai_client):
    def ask(question, **extra):
        return openai_client.chat.completions.create(
            model=TOOLS,
            messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}],
            max_tokens=8,
            temperature=0,
            **extra,
        )

    first, second = ask("What is Redis?"), ask("What is Redis?")
    assert second.choices[0].message.content == first.choices[0].message.content
    cached = second.usage.prompt_tokens_details.cached_tokens
    assert 0 < cached < second.usage.prompt_tokens
    other = ask("What is Celery?")  # the system prompt's blocks are shared
    assert other.usage.prompt_tokens_details.cached_tokens > 0
    chunks = list(ask("What is a broker?", stream=True, stream_options={"include_usage": True}))
    assert chunks[-1].usage.prompt_tokens_details.cached_tokens > 0


def test_completions_and_responses_report_cached_tokens(openai_client):
    prompt = SYSTEM + "Question: what is a queue?"
    for _ in range(2):
        completion = openai_client.completions.create(
            model=TOOLS, prompt=prompt, max_tokens=4, temperature=0
        )
    assert completion.usage.prompt_tokens_details.cached_tokens > 0
    for _ in range(2):
        response = openai_client.responses.create(
            model=TOOLS, instructions=SYSTEM, input="Hi", max_output_tokens=4, temperature=0
        )
    assert response.usage.input_tokens_details.cached_tokens > 0
