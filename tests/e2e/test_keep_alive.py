"""An idle keep-alive connection outlives a balancer's pool of idle connections: the balancer, not the server, is
the one that closes it. Behind HAProxy, a server that closed idle connections after uvicorn's default 5 s raced
with the balancer reusing them, and a client's POST got no response (a scale test's flake)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from tests.support.live_server import LiveServer, serving

IDLE_S = 6.5
"""Longer than uvicorn's default keep-alive (5 s), which the server used to close idle connections after."""


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with serving("sqlite", tmp_path_factory.mktemp("keep-alive")) as server:
        yield server


def read_response(sock: socket.socket) -> bytes:
    """One response's status line and headers (the probe's body is read with them or is empty: it is small)."""
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = sock.recv(65536)
        if not chunk:
            break
        answer += chunk
    return answer


def test_an_idle_connection_is_still_open_after_longer_than_uvicorns_default_keep_alive(
    live_server: LiveServer,
) -> None:
    url = urlsplit(live_server.base_url)
    request = f"GET /health/live HTTP/1.1\r\nHost: {url.netloc}\r\n\r\n".encode()
    with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
        sock.sendall(request)
        assert read_response(sock).startswith(b"HTTP/1.1 200")

        time.sleep(IDLE_S)

        sock.sendall(request)
        assert read_response(sock).startswith(b"HTTP/1.1 200"), "the server closed an idle connection"
