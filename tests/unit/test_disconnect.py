"""Noticing a client that closed its connection, on a real socket pair."""

import socket

from flask import Flask

from app.disconnect import client_gone_check


def check_for(sock):
    app = Flask(__name__)
    with app.test_request_context(environ_base={"llm.socket": sock}):
        return client_gone_check()


def test_a_connected_client_is_not_gone_even_with_data_waiting():
    server, client = socket.socketpair()
    with server, client:
        gone = check_for(server)
        assert gone() is False
        client.sendall(b"GET / HTTP/1.1\r\n")  # a pipelined request: still there
        assert gone() is False
        assert server.recv(100)  # the check only peeked


def test_a_closed_client_is_gone():
    server, client = socket.socketpair()
    with server:
        gone = check_for(server)
        client.close()
        assert gone() is True


def test_without_a_socket_nothing_is_checked():
    app = Flask(__name__)
    with app.test_request_context():
        assert client_gone_check() is None
