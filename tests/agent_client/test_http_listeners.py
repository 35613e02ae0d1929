"""The HTTP servers' listening socket: bound where asked, and no Nagle delay on its connections.

Without TCP_NODELAY a response written in two parts waits for the client's
delayed ACK (about 40 ms a request on loopback; bench/bridges.py showed it
as a flat cost per MCP tool call). The option must hold on the connections
the socket accepts, which is what uvicorn serves.
"""

from __future__ import annotations

import socket

import pytest

from agent_client.http_listeners import listening_socket


def test_accepted_connections_send_without_waiting_for_acks():
    with listening_socket("127.0.0.1", 0) as listening:
        host, port = listening.getsockname()[:2]
        assert host == "127.0.0.1" and port > 0
        with socket.create_connection((host, port), timeout=5) as client:
            accepted, _ = listening.accept()
            with accepted:
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
                client.sendall(b"ping")
                assert accepted.recv(4) == b"ping"


def test_a_port_in_use_is_refused_and_nothing_is_left_open():
    with listening_socket("127.0.0.1", 0) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(OSError):
            listening_socket("127.0.0.1", port)
