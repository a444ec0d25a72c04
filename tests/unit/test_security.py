from app import create_app

BODY = {"model": "m", "messages": []}


def test_oversized_body_is_an_openai_413():
    app = create_app({"REDIS_URL": "redis://127.0.0.1:1", "MAX_CONTENT_LENGTH": 1000})
    response = app.test_client().post(
        "/v1/chat/completions", data="x" * 5000, content_type="application/json"
    )
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "request_too_large"


def test_cors_is_off_unless_configured(client):
    headers = {"Origin": "https://example.com", "Access-Control-Request-Method": "POST"}
    response = client.options("/v1/chat/completions", headers=headers)
    assert "Access-Control-Allow-Origin" not in response.headers
    assert (
        "Access-Control-Allow-Origin"
        not in client.post(
            "/v1/chat/completions", json=BODY, headers={"Origin": "https://example.com"}
        ).headers
    )


def test_cors_for_configured_origins_only():
    app = create_app({"REDIS_URL": "redis://127.0.0.1:1", "CORS_ORIGINS": ["https://ok.example"]})
    client = app.test_client()
    allowed = client.post(
        "/v1/chat/completions", json=BODY, headers={"Origin": "https://ok.example"}
    )
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://ok.example"
    other = client.post(
        "/v1/chat/completions", json=BODY, headers={"Origin": "https://evil.example"}
    )
    assert "Access-Control-Allow-Origin" not in other.headers


def test_api_keys_never_reach_the_log(caplog):
    app = create_app({"REDIS_URL": "redis://127.0.0.1:1", "API_KEYS": ["s3cret-key"]})
    client = app.test_client()
    with caplog.at_level("DEBUG"):
        client.post(
            "/v1/chat/completions", json=BODY, headers={"Authorization": "Bearer s3cret-key"}
        )
        client.post(
            "/v1/chat/completions", json=BODY, headers={"Authorization": "Bearer wrong-key"}
        )
    assert "s3cret-key" not in caplog.text and "wrong-key" not in caplog.text
