from app.errors import JOB_PARAMS, APIError, from_worker, param_names, request_param


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


def test_a_worker_error_names_the_parameter_of_the_endpoint_that_asked():
    """The engine names a job's field; chat and the Responses API name it as their requests do,
    in ``param`` and in the message."""
    event = {
        "code": "context_length_exceeded",
        "message": "The {param} is too long.",
        "field": "messages",
        "details": {"limit": 10},
    }
    chat = from_worker(event)
    responses = from_worker(event, param_names(messages="input"))
    assert chat.status == responses.status == 400
    assert chat.body["error"]["param"] == "messages"
    assert chat.body["error"]["message"] == "The messages is too long."
    assert responses.body["error"]["param"] == "input"
    assert responses.body["error"]["message"] == "The input is too long."
    assert chat.body["error"]["code"] == "context_length_exceeded"


def test_a_field_path_maps_to_the_parameter_it_lies_in():
    names = param_names(params__max_tokens="max_output_tokens", json_schema="text.format")
    assert request_param("prompts[2]", JOB_PARAMS) == "prompt"
    assert request_param("messages[0].content", JOB_PARAMS) == "messages"
    assert request_param("params.max_tokens", names) == "max_output_tokens"
    assert request_param("json_schema", names) == "text.format"
    assert request_param("inputs[1]", JOB_PARAMS) == "input"
    assert request_param(None, JOB_PARAMS) is None
