"""Noticing that a client has closed its connection while its request waits for a job.

A streamed answer learns it when a write fails; a request that is still waiting (for a
non-streamed answer, or for a stream's first token) writes nothing, so it asks the socket: a
connection the client closed is readable and has nothing to read. The socket comes from the WSGI
server: ``runserver``'s handler (:func:`handler_class`) and gunicorn's workers put it in the
environ; elsewhere (the test client) nothing is checked.
"""

from __future__ import annotations

import select
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flask import request

if TYPE_CHECKING:  # at run time, gevent is imported where the handler is made
    from gevent.pywsgi import WSGIHandler

SOCKET_KEYS = ("llm.socket", "gunicorn.socket", "gunicorn.sock")


def client_gone_check() -> Callable[[], bool] | None:
    """A check that says whether the current request's client has gone, or None without a
    socket to check."""
    sock = next((request.environ[k] for k in SOCKET_KEYS if k in request.environ), None)
    if sock is None:
        return None

    def gone() -> bool:
        try:
            readable, _, _ = select.select([sock], [], [], 0)
            # Readable with no data: the client closed its side. Data would be a request it
            # pipelined behind this one, which says it is still there.
            return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):  # reset, or already closed
            return True

    return gone


def handler_class() -> type[WSGIHandler]:
    """gevent's WSGI handler, giving the application its client's socket (``llm.socket``)."""
    from gevent.pywsgi import WSGIHandler

    class SocketHandler(WSGIHandler):
        def get_environ(self) -> dict[str, Any]:
            environ = super().get_environ()
            environ["llm.socket"] = self.socket
            return environ

    return SocketHandler
