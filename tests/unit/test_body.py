"""No request body, however built, gets a 500: each malformed one is a 400 that says why."""

import json

import pytest

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def post(client, raw: bytes | str, path="/v1/chat/completions"):
    response = client.post(path, data=raw, content_type="application/json")
    body = response.get_json()
    assert set(body["error"]) == {"message", "type", "param", "code"}, body
    return response.status_code, body["error"]


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions", "/v1/embeddings"])
def test_nesting_deeper_than_the_limit_is_a_400_however_deep(client, path):
    for depth in (65, 5000, 200_000):  # the last one makes Python's json raise RecursionError
        status, error = post(client, '{"model": "m", "messages": ' + nested(depth) + "}", path)
        assert status == 400 and error["code"] == "json_too_deep"
        assert "64" in error["message"]


def test_nesting_within_the_limit_reaches_validation(client):
    status, error = post(client, json.dumps({**CHAT, "metadata": json.loads(nested(60))}))
    assert error.get("code") != "json_too_deep"  # refused later, for lack of Redis: not here


@pytest.mark.parametrize(
    ("raw", "param"),
    [
        (
            '{"model": "m", "messages": [{"role": "user", "content": "a\\ud800b"}]}',
            "messages[0].content",
        ),
        ('{"model": "m", "prompt": ["ok", "\\udfff"]}', "prompt[1]"),
        ('{"model": "m", "messages": [], "\\ud83d": 1}', None),
        ('{"model": "m", "input": "\\ud800"}', "input"),
    ],
)
def test_text_that_is_not_valid_unicode_is_a_400_naming_where(client, raw, param):
    status, error = post(client, raw)
    assert status == 400 and "Unicode" in error["message"]
    assert error["param"] == param


def test_a_valid_surrogate_pair_is_fine(client):
    status, error = post(client, '{"model": "m", "messages": "\\ud83d\\ude00"}')
    assert "Unicode" not in error["message"]  # an emoji, refused only for not being a list


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_not_json(client, constant):
    status, error = post(client, '{"model": "m", "messages": [], "temperature": ' + constant + "}")
    assert status == 400 and constant.lstrip("-") in error["message"]


@pytest.mark.parametrize(
    "raw",
    [
        b"\xff\xfe\x00garbage",
        "{" + '"a":' * 3 + "1}",
        '{"model": "m", "messages": [], "max_tokens": ' + "9" * 5000 + "}",
        '{"model": "m", "messages": [], "temperature": 1e999}',
        '{"model": "m", "messages": [], "logit_bias": {"²": 1}}',
        '{"model": "m", "messages": [], "logit_bias": {"' + "1" * 5000 + '": 1}}',
        '{"model": "m", "messages": [], "seed": ' + str(2**70) + "}",
        "[]",
        '"just a string"',
    ],
)
def test_malformed_bodies_are_400s(client, raw):
    status, error = post(client, raw)
    assert status == 400, error
