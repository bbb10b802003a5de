"""A method outside the standard set that reaches the app is recorded as `_OTHER` in metrics and logs, so 100
made-up methods cannot grow `/metrics` or add label values. Under httptools (the production stack) only methods
its parser knows reach the app; any other token (`get`, `BREW`) is a 400 problem from the server itself. Requests are
written on a raw socket, because HTTP clients upper-case methods."""

from __future__ import annotations

import json
import random
import re
import socket
import string
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from market.telemetry import names
from tests.support.live_server import LiveServer, serving

STANDARD = {"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"}
METHOD_LABEL = re.compile(r'http_request_method="([^"]*)"')


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with serving("sqlite", tmp_path_factory.mktemp("methods")) as server:
        yield server


def raw_request(server: LiveServer, method: str, path: str) -> int:
    """The status of one request sent as bytes on a socket, method exactly as given."""
    url = urlsplit(server.base_url)
    with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
        sock.sendall(
            f"{method} {path} HTTP/1.1\r\nHost: {url.netloc}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode()
        )
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return int(answer.split(b" ", 2)[1])


# Methods the HTTP parser (httptools, llhttp) knows and HTTP's semantic conventions do not: they reach the app
# and are recorded as _OTHER. Tokens the parser does not know ("get", "BREW") are refused by the server itself
# with a 400 before any application code runs, so they cannot be recorded, nor grow anything, either.
KNOWN_TO_THE_PARSER = ["PROPFIND", "PURGE", "LINK", "MKCOL", "REPORT", "UNLOCK"]


def made_up_methods(count: int) -> list[str]:
    methods = ["get", "Post", "FOOBAR", *KNOWN_TO_THE_PARSER]
    while len(methods) < count:
        method = "".join(random.choices(string.ascii_letters, k=random.randint(3, 12)))
        if method not in STANDARD:
            methods.append(method)
    return methods


def series(exposition: str) -> set[str]:
    """Every sample's name and labels, without its value, of the series a method could mint (those labelled by
    the method: other families, such as the database statements of background writers, grow on their own)."""
    return {
        line.rsplit(" ", 1)[0]
        for line in exposition.splitlines()
        if line and not line.startswith("#") and "http_request_method=" in line
    }


PATHS = ["/api/v1/items", "/health/live", "/no/such/thing"]


def send_batch(server: LiveServer) -> None:
    """100 made-up methods on random paths; those that reach the app, on every path too, so that each batch
    makes every series they can make (a random path alone left the 404 series out of a batch 9 % of the time)."""
    for method in made_up_methods(100):
        expected = {404, 405} if method in KNOWN_TO_THE_PARSER else {400, 404, 405}
        paths = PATHS if method in KNOWN_TO_THE_PARSER else [random.choice(PATHS)]
        for path in paths:
            assert raw_request(server, method, path) in expected, method


def test_made_up_methods_are_other_and_cannot_grow_the_metrics(live_server):
    with live_server.client() as client:
        client.get("/metrics")  # its own series exists before the first look
        send_batch(live_server)
        first = client.get("/metrics").text
        send_batch(live_server)
        second = client.get("/metrics").text
    assert set(METHOD_LABEL.findall(second)) <= STANDARD | {"_OTHER"}
    assert "_OTHER" in METHOD_LABEL.findall(second)
    # A second hundred made-up methods adds no series: only counts change.
    assert series(second) == series(first)
    print(f"/metrics after 100 made-up methods: {len(first)} bytes; after 200: {len(second)} bytes")


def test_made_up_methods_are_other_in_the_access_log_with_the_original_beside_it(live_server):
    assert raw_request(live_server, "PROPFIND", "/health/live") == 405
    assert raw_request(live_server, "PURGE", "/no/such/thing") == 404
    lines = [json.loads(line) for line in live_server.log.read_text().splitlines() if line.startswith("{")]
    access = [line for line in lines if line["logger"] == "market.access"]
    assert {line[names.HTTP_REQUEST_METHOD] for line in access} <= STANDARD | {"_OTHER"}
    purge = [line for line in access if line.get(names.HTTP_REQUEST_METHOD_ORIGINAL) == "PURGE"]
    assert purge and purge[-1]["message"] == "_OTHER /no/such/thing 404"
    assert any(line.get(names.HTTP_REQUEST_METHOD_ORIGINAL) == "PROPFIND" for line in access)


def raw_answer(server: LiveServer, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-case names) and body of the answer to `request`, sent as bytes on a socket."""
    url = urlsplit(server.base_url)
    with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {
        name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)
    }
    return int(status_line.split(" ", 2)[1]), headers, body


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /api/v1/items HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer a\x01b\r\n\r\n",
        b"BREW /api/v1/items HTTP/1.1\r\nHost: x\r\n\r\n",
        b"get /health/live HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /health/live HTTP/9.9 extra\r\n\r\n",
        b"\x00\x01\x02 not http at all\r\n\r\n",
    ],
    ids=[
        "control character in a header",
        "unknown method",
        "lower-case method",
        "bad request line",
        "binary",
    ],
)
def test_a_request_the_parser_refuses_gets_the_malformed_request_problem(live_server, request_bytes):
    """Such requests never reach the app; the server's own answer is still the contract's problem+json, with a
    trace id to quote in both the body and `traceresponse`, and a session id."""
    status, headers, body = raw_answer(live_server, request_bytes)
    assert status == 400
    assert headers["content-type"] == "application/problem+json"
    assert int(headers["content-length"]) == len(body)
    problem = json.loads(body)
    assert problem["type"] == "https://market.dev/problems/malformed-request"
    assert (problem["status"], bool(problem["title"]), bool(problem["detail"])) == (400, True, True)
    assert re.fullmatch(r"[0-9a-f]{32}", problem["trace_id"])
    assert headers["traceresponse"].split("-")[1] == problem["trace_id"]
    assert re.fullmatch(r"[0-9a-f]{32}", headers["x-session-id"])
    # The reference is one support can look up: a log line of the server carries it.
    lines = [json.loads(line) for line in live_server.log.read_text().splitlines() if line.startswith("{")]
    (line,) = [line for line in lines if line["trace_id"] == problem["trace_id"]]
    assert line[names.HTTP_RESPONSE_STATUS_CODE] == 400
