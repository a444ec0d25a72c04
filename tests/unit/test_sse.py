import json

from flask import Flask

from app.sse import DONE_FRAME, frame, sse_response


def test_frame_is_one_data_line_and_a_blank_line():
    text = frame({"a": "line\nbreak", "b": 1})
    assert text.startswith("data: ") and text.endswith("\n\n")
    assert text.count("\n") == 2  # JSON escapes newlines, so a frame never splits
    assert json.loads(text[len("data: ") :]) == {"a": "line\nbreak", "b": 1}


def test_done_frame():
    assert DONE_FRAME == "data: [DONE]\n\n"


def test_response_headers_disable_proxy_buffering():
    app = Flask(__name__)

    @app.get("/s")
    def stream():
        return sse_response(iter([frame({"x": 1}), DONE_FRAME]))

    response = app.test_client().get("/s")
    assert response.mimetype == "text/event-stream"
    assert response.headers["X-Accel-Buffering"] == "no"
    assert response.headers["Cache-Control"] == "no-cache"
    assert response.get_data(as_text=True) == 'data: {"x":1}\n\ndata: [DONE]\n\n'
