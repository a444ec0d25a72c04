"""Reading a request's JSON body so that no body, however built, gets a 500 or harms the process.

Python's ``json`` accepts what OpenAI's API refuses and what the rest of the stack cannot take:
``NaN`` and ``Infinity`` (which pass every range check, being unordered), strings holding lone
UTF-16 surrogates such as ``"\\ud800"`` (which no tokenizer can encode), and nesting deep enough to
raise ``RecursionError``. Each is a 400 here, naming the parameter where it can, before anything
is queued.
"""

from __future__ import annotations

import json
from typing import Any

from flask import current_app, request

from app.errors import APIError


def read_json() -> Any:
    """The request's body as JSON, checked (see the module's docstring); a 400 otherwise."""
    raw = request.get_data(cache=True)
    try:
        body = json.loads(raw, parse_constant=_refuse_constant)
    except RecursionError:
        raise _too_deep(current_app.config["MAX_JSON_DEPTH"]) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise APIError(400, f"The request body is not valid JSON: {exc}") from None
    check_json(body, current_app.config["MAX_JSON_DEPTH"])
    return body


def check_json(value: Any, max_depth: int) -> None:
    """Raise a 400 for nesting deeper than ``max_depth`` or a string that is not valid Unicode.

    Iterative, so that the check itself never recurses."""
    stack: list[tuple[Any, str, int]] = [(value, "", 1)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, str):
            _check_text(item, path)
        elif isinstance(item, (dict, list)):
            if depth > max_depth:
                raise _too_deep(max_depth, path)
            if isinstance(item, dict):
                for key, child in item.items():
                    _check_text(key, path)
                    stack.append((child, f"{path}.{key}" if path else key, depth + 1))
            else:
                for index, child in enumerate(item):
                    stack.append((child, f"{path}[{index}]", depth + 1))


def _check_text(text: str, path: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        where = f"'{path}'" if path else "the request body"
        raise APIError(
            400,
            f"Invalid value for {where}: not valid Unicode (a lone surrogate, "
            f"U+{ord(text[exc.start]):04X}, at character {exc.start}).",
            param=_param(path),
        ) from None


def _param(path: str) -> str | None:
    """The parameter a path names, in the style of the schema's errors (``messages[0].content``)."""
    return path or None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a valid JSON value")


def _too_deep(max_depth: int, path: str = "") -> APIError:
    return APIError(
        400,
        f"The request body is nested more than {max_depth} levels deep (MAX_JSON_DEPTH).",
        param=_param(path),
        code="json_too_deep",
    )
