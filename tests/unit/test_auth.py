import pytest

from app import create_app

BAD_BODY = {"model": "m", "messages": []}  # reaching validation proves auth let it through


@pytest.fixture
def keyed_client():
    app = create_app({"REDIS_URL": "redis://127.0.0.1:1/0", "API_KEYS": ["k1", "k2"]})
    return app.test_client()


def status(client, headers):
    return client.post("/v1/chat/completions", json=BAD_BODY, headers=headers).status_code


def test_without_keys_any_key_or_none_is_accepted(client):
    assert status(client, {}) == 400
    assert status(client, {"Authorization": "Bearer EMPTY"}) == 400


def test_with_keys_a_listed_bearer_key_is_needed(keyed_client):
    assert status(keyed_client, {"Authorization": "Bearer k2"}) == 400
    for headers in (
        {},
        {"Authorization": "Bearer nope"},
        {"Authorization": "Basic k1"},
        {"Authorization": "Bearer k1x"},
        {"Authorization": "Bearer "},
    ):
        assert status(keyed_client, headers) == 401


def test_401_is_openai_shaped(keyed_client):
    response = keyed_client.get("/v1/models", headers={"Authorization": "Bearer wrong"})
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "invalid_api_key"
