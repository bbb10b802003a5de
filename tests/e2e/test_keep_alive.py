"""An idle keep-alive connection outlives a balancer's pool of idle connections: the balancer, not the server, is
the one that closes it. Behind HAProxy, a server that closed idle connections after uvicorn's default 5 s raced
with the balancer reusing them, and a client's POST got no response (a scale test's flake). MARKET_KEEP_ALIVE_S
sets it (default 75 s)."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

from tests.support.live_server import LiveServer, serving

IDLE_S = 6.5
"""Longer than uvicorn's default keep-alive (5 s), which the server used to close idle connections after."""


def read_response(sock: socket.socket) -> bytes:
    """One whole response, its body read to its Content-Length (b"" when the server closed the connection
    instead): a body left unread would be taken for the start of the next response."""
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = sock.recv(65536)
        if not chunk:
            return answer
        answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def second_request_after(server: LiveServer, idle_s: float) -> bytes:
    """The answer to a request sent on a connection left idle for `idle_s` after a first request."""
    url = urlsplit(server.base_url)
    request = f"GET /health/live HTTP/1.1\r\nHost: {url.netloc}\r\n\r\n".encode()
    with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
        sock.sendall(request)
        assert read_response(sock).startswith(b"HTTP/1.1 200")
        time.sleep(idle_s)
        try:
            sock.sendall(request)
            return read_response(sock)
        except ConnectionError:
            return b""


def test_an_idle_connection_is_still_open_after_longer_than_uvicorns_default_keep_alive(
    tmp_path: Path,
) -> None:
    with serving("sqlite", tmp_path) as server:
        assert second_request_after(server, IDLE_S).startswith(b"HTTP/1.1 200"), "the server closed it"


def test_the_keep_alive_is_the_configured_one(tmp_path: Path) -> None:
    with serving("sqlite", tmp_path, {"MARKET_KEEP_ALIVE_S": "1"}) as server:
        assert second_request_after(server, 2.5) == b"", "the server kept it open past MARKET_KEEP_ALIVE_S"
