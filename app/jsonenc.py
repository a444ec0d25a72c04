"""Flask's JSON responses written by orjson.

The json module spends most of an embeddings response on its floats (16 vectors of 384 floats:
2.5 ms a response, about 8% of a core at 30 responses a second); orjson writes the same in
0.25 ms. Streamed events and everything on the wire go through ``config.protocol.encode``,
which uses orjson too.
"""

from __future__ import annotations

from typing import Any

import orjson
from flask.json.provider import DefaultJSONProvider


class JSONProvider(DefaultJSONProvider):
    """Flask's JSON provider with orjson writing compact responses (keys sorted, as Flask's);
    what orjson cannot write (an integer past 64 bits, a type only Flask knows) falls back to
    Flask's own."""

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        if set(kwargs) <= {"separators"} and kwargs.get("separators", (",", ":")) == (",", ":"):
            try:
                options = orjson.OPT_NON_STR_KEYS | (orjson.OPT_SORT_KEYS if self.sort_keys else 0)
                return orjson.dumps(obj, default=self.default, option=options).decode()
            except TypeError:
                pass
        return super().dumps(obj, **kwargs)
