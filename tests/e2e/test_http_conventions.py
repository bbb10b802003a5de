"""Conventions every response follows: problem details, trace headers, sessions, HTTP-level errors."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime

import pytest

from tests.support.live_server import auth, register, serving

from .helpers import (
    HEX32,
    TRACERESPONSE,
    assert_problem,
    create_admin,
    create_item,
    item_body,
    problem_type,
    trace_id_of,
    unique_word,
)

BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"
SESSION = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def test_malformed_json_is_a_400_problem(client):
    for body in (b"{bad", b'{"email": ', b"\xff\xfe", b"{'single': 'quotes'}"):
        r = client.post("/api/v1/auth/register", content=body, headers={"Content-Type": "application/json"})
        assert_problem(r, 400, type_uri=problem_type("malformed-request"))


def test_a_body_over_1_mib_is_413(client):
    seller = register(client, role="seller")
    huge = item_body(description="x" * (2 * 1024 * 1024))
    r = client.post("/api/v1/items", json=huge, headers=auth(seller))
    assert_problem(r, 413)


def test_a_smaller_max_body_bytes_setting_makes_a_smaller_body_413(tmp_path):
    with serving("sqlite", tmp_path, {"MARKET_MAX_BODY_BYTES": "4096"}) as server, server.client() as client:
        seller = register(client, role="seller")
        r = client.post("/api/v1/items", json=item_body(description="x" * 4500), headers=auth(seller))
        assert_problem(r, 413)
        fits = client.post("/api/v1/items", json=item_body(description="x" * 1000), headers=auth(seller))
        assert fits.status_code == 201, fits.text


@pytest.mark.parametrize(
    "path", ["/api/v1/nope", "/nope", "/api/v2/items", "/api/v1/items/1/2", "/schema/nope"]
)
def test_unknown_routes_are_404_problems(client, path):
    assert_problem(client.get(path), 404)


def test_json_clients_get_a_problem_even_when_they_accept_html_too(client):
    r = client.get("/api/v1/nope", headers={"Accept": "application/json, text/html;q=0.5"})
    assert_problem(r, 404)
    r = client.get("/api/v1/nope", headers={"Accept": "*/*"})
    assert_problem(r, 404)


def test_a_browser_gets_a_friendly_html_404_linking_to_the_docs(client):
    r = client.get("/no/such/page", headers={"Accept": BROWSER_ACCEPT})
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("text/html")
    assert 'href="/docs"' in r.text
    assert "<html" in r.text.lower()
    trace_id_of(r)


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/no/such/page", "text/html; charset=utf-8"),  # the browser's 404
        ("/docs", "text/html; charset=utf-8"),
        ("/docs/assets/swagger-ui.css", "text/css; charset=utf-8"),
        ("/docs/assets/docs.js", "text/javascript; charset=utf-8"),
        ("/admin/login", "text/html; charset=utf-8"),  # as every admin and seller page
        ("/admin/static/dashboard.css", "text/css; charset=utf-8"),
    ],
)
def test_text_responses_name_their_charset_once(client, path, content_type):
    r = client.get(path, headers={"Accept": BROWSER_ACCEPT})
    assert r.headers["content-type"] == content_type, (r.status_code, r.headers)


def test_html_404_escapes_the_path(client):
    r = client.get("/%3Cscript%3Ealert(1)%3C/script%3E", headers={"Accept": BROWSER_ACCEPT})
    assert r.status_code == 404
    assert "<script>" not in r.text


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/api/v1/items"),
        ("DELETE", "/api/v1/me"),
        ("GET", "/api/v1/auth/token"),
        ("POST", "/health/live"),
    ],
)
def test_a_wrong_method_is_a_405_problem_listing_the_allowed_ones(client, method, path):
    r = client.request(method, path)
    assert_problem(r, 405)
    assert r.headers.get("allow")


def test_options_lists_every_method_of_a_path(client):
    r = client.options("/api/v1/items")
    assert {m.strip() for m in r.headers["allow"].split(",")} >= {"GET", "POST", "OPTIONS"}
    r = client.options(f"/api/v1/items/{uuid.uuid4()}")
    assert {m.strip() for m in r.headers["allow"].split(",")} >= {"GET", "PATCH", "DELETE", "OPTIONS"}


@pytest.mark.parametrize(
    "path", ["/health/live", "/api/v1/items", "/api/v1/me", "/api/v1/nope", "/docs", "/schema/openapi.json"]
)
def test_every_response_carries_traceresponse(client, path):
    r = client.get(path)
    match = TRACERESPONSE.match(r.headers.get("traceresponse", ""))
    assert match, r.headers


def test_each_request_gets_its_own_trace(client):
    assert trace_id_of(client.get("/health/live")) != trace_id_of(client.get("/health/live"))


def test_an_incoming_traceparent_is_honoured(client):
    trace_id = uuid.uuid4().hex
    parent = f"00-{trace_id}-00f067aa0ba902b7-01"
    r = client.get("/api/v1/nope", headers={"traceparent": parent, "tracestate": "vendor=abc"})
    assert trace_id_of(r) == trace_id
    assert r.headers["traceresponse"].split("-")[2] != "00f067aa0ba902b7"  # our span, child of theirs
    assert r.json()["trace_id"] == trace_id
    ok = client.get("/health/live", headers={"traceparent": parent})
    assert trace_id_of(ok) == trace_id


def test_an_invalid_traceparent_starts_a_new_trace(client):
    r = client.get("/health/live", headers={"traceparent": "00-zzzz-xxxx-01"})
    assert r.status_code == 200
    assert HEX32.match(trace_id_of(r))


def test_a_valid_session_id_is_echoed(client):
    for session in ("abc", "Session-1.2_3", "s" * 64, "...", ".a", "-"):
        r = client.get("/health/live", headers={"X-Session-Id": session})
        assert r.headers["x-session-id"] == session


def test_a_missing_session_id_is_issued(client):
    first = client.get("/health/live").headers["x-session-id"]
    second = client.get("/api/v1/nope").headers["x-session-id"]
    assert SESSION.match(first) and SESSION.match(second)
    assert first != second


# `.` and `..` are not path segments a client or proxy keeps: the session's admin page could not be opened.
@pytest.mark.parametrize("session", ["", "has space", "s" * 65, "semi;colon", "ümlaut", "a/b", ".", ".."])
def test_an_invalid_session_id_is_replaced(client, session):
    r = client.get("/health/live", headers={"X-Session-Id": session.encode("utf-8")})
    issued = r.headers["x-session-id"]
    assert issued != session
    assert SESSION.match(issued)


def test_problems_carry_the_session_and_trace_headers_too(client):
    r = client.get("/api/v1/items", params={"limit": 1000}, headers={"X-Session-Id": "sess-42"})
    assert_problem(r, 400)
    assert r.headers["x-session-id"] == "sess-42"


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/health/live", 200),
        ("/api/v1/items?limit=2", 200),
        ("/schema/openapi.json", 200),
        ("/api/v1/nope", 404),
    ],
)
def test_head_is_answered_wherever_get_is_with_the_gets_headers_and_no_body(client, path, status):
    """RFC 9110: a general-purpose server supports HEAD wherever it supports GET (uptime checks use it)."""
    get, head = client.get(path), client.head(path)
    assert (get.status_code, head.status_code) == (status, status)
    assert head.content == b""
    assert head.headers["content-type"] == get.headers["content-type"]
    assert head.headers["content-length"] == get.headers["content-length"] == str(len(get.content))
    assert TRACERESPONSE.match(head.headers["traceresponse"])


def _counts(client) -> dict[str, float]:
    """The view and search counters of /metrics, summed over their labels."""
    totals = {"market_item_views_total": 0.0, "market_search_queries_total": 0.0}
    for line in client.get("/metrics").text.splitlines():
        name = line.split("{")[0].split(" ")[0]
        if name in totals:
            totals[name] += float(line.rsplit(" ", 1)[1])
    return totals


def test_a_head_is_neither_an_item_view_nor_a_search(live_server, client):
    """An uptime check or a link checker sending HEAD is not a shopper: the reports and /metrics count no view
    and no search for it (and no session that browsed); the same GETs are counted."""
    admin = create_admin(live_server, client)
    seller = register(client, role="seller")
    word = unique_word()
    item = create_item(client, seller, title=f"Probe {word} jug")
    session = {"X-Session-Id": f"head-{uuid.uuid4().hex[:12]}"}

    def figures(start: datetime) -> tuple[int, int, dict[str, float]]:
        period = {"from": start.isoformat(), "to": datetime.now(UTC).isoformat()}
        searches = client.get("/api/v1/admin/analytics/search", params=period, headers=auth(admin)).json()
        views = client.get("/api/v1/seller/dashboard", params=period, headers=auth(seller)).json()
        return searches["searches"], views["views"], _counts(client)

    start, before = datetime.now(UTC), _counts(client)
    assert client.head(f"/api/v1/items/{item['id']}", headers=session).status_code == 200
    assert client.head("/api/v1/items", params={"q": word}, headers=session).status_code == 200
    assert figures(start) == (0, 0, before)

    assert client.get(f"/api/v1/items/{item['id']}", headers=session).status_code == 200
    assert client.get("/api/v1/items", params={"q": word}, headers=session).status_code == 200
    after = {name: value + 1 for name, value in before.items()}
    assert figures(start) == (1, 1, after)


def test_allow_lists_head_beside_get(client):
    allowed = {m.strip() for m in client.options("/api/v1/items").headers["allow"].split(",")}
    assert {"GET", "HEAD"} <= allowed
    refused = client.put("/health/live")
    assert_problem(refused, 405)
    assert {m.strip() for m in refused.headers["allow"].split(",")} >= {"GET", "HEAD"}
    post_only = client.get("/api/v1/auth/token")
    assert "HEAD" not in {m.strip() for m in post_only.headers["allow"].split(",")}
