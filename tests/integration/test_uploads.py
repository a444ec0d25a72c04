"""The upload guards of ``POST /v1/files`` through the openai SDK (a file over FILE_MAX_BYTES,
a batch file over BATCH_MAX_LINES, an unknown purpose, an empty file: each a clear OpenAI error
naming its parameter, nothing stored), and FILES_DIR: contents kept as files in a directory every
front shares, read back through another front, gone once deleted."""

from __future__ import annotations

import json

import openai
import pytest

KEY = "upload-key"


@pytest.fixture(scope="module")
def files_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("files")


@pytest.fixture(scope="module")
def fronts(stack, files_dir):
    settings = {
        "API_KEYS": KEY,
        "FILE_MAX_BYTES": "2000",
        "BATCH_MAX_LINES": "3",
        "FILES_DIR": str(files_dir),
    }
    return stack.front(**settings), stack.front(**settings)


@pytest.fixture(scope="module")
def client(fronts):
    return openai.OpenAI(base_url=f"{fronts[0]}/v1", api_key=KEY, max_retries=0)


def lines(count: int) -> bytes:
    line = {"custom_id": "x", "method": "POST", "url": "/v1/chat/completions", "body": {}}
    return b"".join(
        json.dumps({**line, "custom_id": f"r{i}"}).encode() + b"\n" for i in range(count)
    )


@pytest.mark.parametrize(
    ("content", "purpose", "status", "param"),
    [
        (b"x" * 2001, "user_data", 413, None),  # over FILE_MAX_BYTES
        (lines(4), "batch", 400, "file"),  # over BATCH_MAX_LINES
        (b"x", "nonsense", 400, "purpose"),
        (b"", "user_data", 400, "file"),
    ],
)
def test_uploads_outside_the_limits_are_refused(client, content, purpose, status, param):
    before = [f.id for f in client.files.list()]
    with pytest.raises(openai.APIStatusError) as refused:
        client.files.create(file=("f.jsonl", content), purpose=purpose)
    assert refused.value.status_code == status
    error = refused.value.body
    assert error["message"] and error["type"] and error["param"] == param
    assert [f.id for f in client.files.list()] == before  # nothing stored


def test_uploads_within_the_limits_are_kept(client):
    # The limit is the upload's whole body: a file well under it, with its form around it.
    assert client.files.create(file=("f.bin", b"x" * 1500), purpose="user_data").bytes == 1500
    assert client.files.create(file=("b.jsonl", lines(3)), purpose="batch").bytes > 0


def test_files_dir_keeps_contents_that_every_front_reads(client, fronts, files_dir):
    file = client.files.create(file=("notes.txt", b"kept on disk"), purpose="user_data")
    assert (files_dir / file.id).read_bytes() == b"kept on disk"
    other = openai.OpenAI(base_url=f"{fronts[1]}/v1", api_key=KEY, max_retries=0)
    assert other.files.content(file.id).content == b"kept on disk"
    other.files.delete(file.id)
    assert not (files_dir / file.id).exists()
