"""The server span as an SRE sees it in Jaeger: named by route template, never by raw path."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest
from litestar.testing import TestClient
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from market.adapters.http.protocols import malformed_request_response
from market.bootstrap import build_app
from market.config import Settings
from market.telemetry import names
from market.telemetry.asgi import ServerSpanMiddleware
from market.telemetry.logs import AccessLog


@pytest.fixture
def traced(tmp_path, span_exporter) -> Iterator[tuple[TestClient, InMemorySpanExporter]]:
    settings = Settings.from_env(
        {"MARKET_DATABASE_URL": f"sqlite:///{tmp_path / 'm.db'}", "MARKET_VAR_DIR": str(tmp_path)},
        dotenv=None,
    )
    with TestClient(build_app(settings)) as client:
        span_exporter.clear()
        yield client, span_exporter


def _server_spans(exporter: InMemorySpanExporter):
    return [s for s in exporter.get_finished_spans() if s.kind is SpanKind.SERVER]


def test_server_span_is_named_by_route_template_not_raw_path(traced):
    client, exporter = traced
    response = client.get(
        "/api/v1/items/6f1c1b54-0000-4000-8000-000000000000", headers={"User-Agent": "probe"}
    )
    assert response.status_code == 404
    (span,) = _server_spans(exporter)
    assert span.name == "GET /api/v1/items/{item_id}"
    assert span.attributes[names.HTTP_ROUTE] == "/api/v1/items/{item_id}"
    assert span.attributes[names.URL_PATH] == "/api/v1/items/6f1c1b54-0000-4000-8000-000000000000"
    assert span.attributes[names.HTTP_RESPONSE_STATUS_CODE] == 404
    assert span.attributes[names.USER_AGENT_ORIGINAL] == "probe"
    assert span.status.status_code is StatusCode.UNSET  # a 4xx is the client's business, not an error
    assert not span.events or all(e.name != "exception" for e in span.events)


def test_unknown_route_span_is_named_by_method_alone(traced):
    client, exporter = traced
    client.get("/no/such/thing")
    (span,) = _server_spans(exporter)
    assert span.name == "GET"
    assert names.HTTP_ROUTE not in span.attributes


def test_traceresponse_and_problem_trace_id_match_the_server_span(traced):
    client, exporter = traced
    response = client.get("/no/such/thing")
    (span,) = _server_spans(exporter)
    trace_id = format(span.context.trace_id, "032x")
    assert response.headers["traceresponse"].split("-")[1] == trace_id
    assert response.json()["trace_id"] == trace_id


def test_incoming_traceparent_is_continued(traced):
    client, exporter = traced
    parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    client.get("/health/live", headers={"traceparent": parent})
    (span,) = _server_spans(exporter)
    assert format(span.context.trace_id, "032x") == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert format(span.parent.span_id, "016x") == "00f067aa0ba902b7"


def test_session_id_is_on_the_span_and_echoed(traced):
    client, exporter = traced
    response = client.get("/health/live", headers={"X-Session-Id": "abc.DEF-123_x"})
    assert response.headers["x-session-id"] == "abc.DEF-123_x"
    (span,) = _server_spans(exporter)
    assert span.attributes[names.SESSION_ID] == "abc.DEF-123_x"


def test_authenticated_user_is_on_the_span_by_id_and_role_never_email(traced):
    client, exporter = traced
    client.post(
        "/api/v1/auth/register",
        json={"email": "span@example.com", "password": "0123456789", "display_name": "S", "role": "buyer"},
    )
    token = client.post("/api/v1/auth/token", json={"email": "span@example.com", "password": "0123456789"})
    me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {token.json()['access_token']}"})
    span = _server_spans(exporter)[-1]
    assert span.attributes[names.ENDUSER_ID] == me.json()["id"]
    assert span.attributes[names.USER_ROLE] == "buyer"
    assert all("span@example.com" not in str(v) for v in span.attributes.values())


@pytest.mark.parametrize("method", ["FOOBAR", "PROPFIND"])
def test_a_method_outside_the_standard_set_is_recorded_as_other_with_the_original_beside_it(traced, method):
    client, exporter = traced
    assert client.request(method, "/no/such/thing").status_code == 404
    assert client.request(method, "/api/v1/items").status_code == 405
    unknown, wrong_method = _server_spans(exporter)
    assert unknown.name == "_OTHER"  # no route template: an unknown path
    assert wrong_method.name == "_OTHER /api/v1/items"  # the path matched a route, only the method did not
    for span in (unknown, wrong_method):
        assert span.attributes[names.HTTP_REQUEST_METHOD] == "_OTHER"
        assert span.attributes[names.HTTP_REQUEST_METHOD_ORIGINAL] == method


@pytest.mark.parametrize(
    ("method", "path", "template"),
    [
        ("DELETE", "/api/v1/items", "/api/v1/items"),
        ("PUT", "/api/v1/items/6f1c1b54-0000-4000-8000-000000000000", "/api/v1/items/{item_id}"),
    ],
)
def test_a_405_carries_the_route_template_the_path_matched(traced, method, path, template):
    """Only the method was wrong: the span, its duration series and its access line group under the route
    (what SREs group by), as every other answer of that route does; an unknown path (404) has none."""
    client, exporter = traced
    response = client.request(method, path)
    assert response.status_code == 405
    (span,) = _server_spans(exporter)
    assert span.name == f"{method} {template}"
    assert span.attributes[names.HTTP_ROUTE] == template
    assert span.attributes[names.HTTP_RESPONSE_STATUS_CODE] == 405
    assert response.json()["trace_id"] == format(span.context.trace_id, "032x")
    metrics = client.get("/metrics").text
    assert any(
        f'http_route="{template}"' in line and 'http_response_status_code="405"' in line
        for line in metrics.splitlines()
        if line.startswith("http_server_request_duration_seconds_count")
    )


def test_methods_are_case_sensitive_so_lower_case_get_is_other(span_exporter):
    """httpx upper-cases methods: the middleware is called directly, as uvicorn (h11) would with `get`."""

    async def app(scope, receive, send):
        scope["path_template"] = "/health/live"
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def ignore(message):
        pass

    scope = {
        "type": "http",
        "method": "get",
        "path": "/health/live",
        "headers": [],
        "client": ("127.0.0.1", 1),
    }
    middleware = ServerSpanMiddleware(app, trace.get_tracer("test"), access_log=AccessLog())
    asyncio.run(middleware(scope, None, ignore))
    (span,) = _server_spans(span_exporter)
    assert span.name == "_OTHER /health/live"
    assert span.attributes[names.HTTP_REQUEST_METHOD] == "_OTHER"
    assert span.attributes[names.HTTP_REQUEST_METHOD_ORIGINAL] == "get"


@pytest.mark.parametrize("method", ["GET", "OPTIONS"])
def test_a_standard_method_is_recorded_as_is_without_an_original(traced, method):
    client, exporter = traced
    client.request(method, "/health/live")
    (span,) = _server_spans(exporter)
    assert span.attributes[names.HTTP_REQUEST_METHOD] == method
    assert span.name.split()[0] == method
    assert names.HTTP_REQUEST_METHOD_ORIGINAL not in span.attributes


def test_a_request_the_parser_refuses_has_a_server_span_with_the_trace_id_it_was_given(span_exporter):
    """uvicorn answers such a request before any app code runs (adapters/http/protocols.py): the trace id of
    its problem still names an exported span, as every other problem's does."""
    response = malformed_request_response([], ("203.0.113.9", 40000))
    head, _, body = response.partition(b"\r\n\r\n")
    problem = json.loads(body)
    (span,) = _server_spans(span_exporter)
    assert format(span.context.trace_id, "032x") == problem["trace_id"]
    traceresponse = next(line for line in head.split(b"\r\n") if line.startswith(b"traceresponse:"))
    assert traceresponse.split(b"-")[2].decode() == format(span.context.span_id, "016x")
    assert span.attributes[names.HTTP_RESPONSE_STATUS_CODE] == 400
    assert span.attributes[names.CLIENT_ADDRESS] == "203.0.113.9"
    assert span.status.status_code is StatusCode.UNSET  # the client's error
