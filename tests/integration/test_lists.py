"""Lists of files and batches through the openai SDK and plain HTTP: objects made within the same
second list in creation order, newest first (oldest first with ``order=asc`` for files), and
pages walked with ``after`` and ``limit`` neither skip nor repeat an object; ``has_more`` says
whether a page is the last; a cursor that is not in the list is a 400."""

from __future__ import annotations

import json
import time

import openai
import pytest

from tests.integration.conftest import OFFLINE
from tests.integration.http import get

KEY = "list-key"


@pytest.fixture(scope="module")
def lists_front(stack, redis_server):
    return stack.front(API_KEYS=KEY)  # its own key: a list of its own, whatever else ran


@pytest.fixture(scope="module")
def client(lists_front):
    return openai.OpenAI(base_url=f"{lists_front}/v1", api_key=KEY, max_retries=0)


def batch_file() -> bytes:
    line = {
        "custom_id": "only",
        "method": "POST",
        "url": "/v1/chat/completions",
        # A registered model no worker serves: the batches wait, and only their order counts.
        "body": {"model": OFFLINE, "messages": [{"role": "user", "content": "Hi"}]},
    }
    return (json.dumps(line) + "\n").encode()


def walk(front: str, path: str, limit: int, **query: str) -> tuple[list[str], list[bool]]:
    """Every id of a list, a page of ``limit`` at a time; and each page's has_more."""
    ids, more, after = [], [], None
    while True:
        params = "&".join(
            f"{k}={v}" for k, v in {"limit": limit, **query, "after": after}.items() if v
        )
        status, _, page = get(front, f"{path}?{params}", {"Authorization": f"Bearer {KEY}"})
        assert status == 200, page
        ids += [item["id"] for item in page["data"]]
        more.append(page["has_more"])
        if page["data"]:
            assert page["first_id"] == page["data"][0]["id"]
            assert page["last_id"] == page["data"][-1]["id"]
        if not page["has_more"]:
            return ids, more
        after = page["last_id"]


def test_files_made_in_one_second_list_newest_first_and_page_exactly(client, lists_front):
    started = time.monotonic()
    made = [
        client.files.create(file=(f"f{i}.txt", b"x"), purpose="user_data" if i % 3 else "batch")
        for i in range(13)
    ]
    print(f"\n13 files uploaded in {time.monotonic() - started:.2f} s")
    assert len({f.created_at for f in made}) < 13  # some share their second: ties to order
    ids = [f.id for f in made]
    assert [f.id for f in client.files.list()] == ids[::-1]
    assert [f.id for f in client.files.list(order="asc")] == ids
    for limit in (1, 4, 13, 20):
        walked, more = walk(lists_front, "/v1/files", limit)
        assert walked == ids[::-1], limit
        assert more == [True] * (len(more) - 1) + [False]
    walked, _ = walk(lists_front, "/v1/files", 5, order="asc")
    assert walked == ids
    # A filter pages over its own objects only.
    batch_ids = [f.id for f in made if f.purpose == "batch"]
    walked, _ = walk(lists_front, "/v1/files", 2, purpose="batch")
    assert walked == batch_ids[::-1]
    # The SDK's auto-pagination walks the same pages.
    assert [f.id for f in client.files.list(limit=3)] == ids[::-1]


def test_batches_made_in_one_second_list_newest_first_and_page_exactly(client, lists_front):
    file = client.files.create(file=("batch.jsonl", batch_file()), purpose="batch")
    made = [
        client.batches.create(
            input_file_id=file.id, endpoint="/v1/chat/completions", completion_window="24h"
        ).id
        for _ in range(7)
    ]
    first = client.batches.list(limit=2)
    assert [b.id for b in first.data] == made[::-1][:2] and first.has_more
    for limit in (1, 2, 3, 7, 100):
        walked, more = walk(lists_front, "/v1/batches", limit)
        assert walked == made[::-1], limit
        assert more[-1] is False and all(more[:-1])
    assert [b.id for b in client.batches.list(limit=3)] == made[::-1]  # auto-pagination
    for batch_id in made:
        client.batches.cancel(batch_id)


def test_a_cursor_not_in_the_list_is_a_400(client):
    for listing in (client.files.list, client.batches.list):
        with pytest.raises(openai.BadRequestError) as error:
            listing(after="file-or-batch-that-is-not-there")
        assert error.value.body["param"] == "after"
