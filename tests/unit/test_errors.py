from app.errors import APIError


def assert_openai_error(response, status):
    assert response.status_code == status
    body = response.get_json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"]
    return body["error"]


def test_unknown_route_is_an_openai_404(client):
    error = assert_openai_error(client.get("/v1/nothing-here"), 404)
    assert error["type"] == "invalid_request_error"


def test_wrong_method_is_an_openai_405(client):
    assert_openai_error(client.get("/v1/chat/completions"), 405)


def test_malformed_json_is_a_400_not_a_500(client):
    response = client.post(
        "/v1/chat/completions", data="{not json", content_type="application/json"
    )
    assert_openai_error(response, 400)


def test_validation_error_names_the_parameter(client):
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": -1}
    error = assert_openai_error(client.post("/v1/chat/completions", json=body), 400)
    assert error["param"] == "temperature"
    assert "temperature" in error["message"]


def test_api_error_body_shape():
    error = APIError(429, "slow down", code="rate_limit_exceeded")
    assert error.body == {
        "error": {
            "message": "slow down",
            "type": "rate_limit_error",
            "param": None,
            "code": "rate_limit_exceeded",
        }
    }


def test_unexpected_exception_is_an_openai_500(app):
    @app.get("/boom")
    def boom():
        raise RuntimeError("kaboom")

    error = assert_openai_error(app.test_client().get("/boom"), 500)
    assert "kaboom" not in error["message"]  # internals stay in the log
