"""Session replay, done when: a scripted shopper (browse, search, cart, a declined card, then a request that hits
`test-monitoring error`) is found from the Sentry event alone, and its timeline — requests and business events,
in order, with the right trace ids — is what the API and the CLI show, on both engines. (The page: see
test_session_replay_browser.py.)"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests.support.live_server import LiveServer, auth, register, serving
from tests.support.servers.telemetry_receivers import SentryReceiver

from .helpers import assert_problem, create_admin, create_item, run_market, trace_id_of, unique_word

TRACE_URL = "http://tempo.example/trace/{trace_id}"
SENTRY_URL = "http://sentry.example/issues/?query={event_id}"


@dataclass
class Shopper:
    """What the client saw: its session, each request's trace id, and the failing request's references."""

    server: LiveServer
    session_id: str
    buyer: dict[str, str]
    admin: dict[str, str]
    word: str
    traces: dict[str, str]
    order_id: str
    failing_trace: str
    sentry_event_id: str
    sentry_event: dict[str, Any]


def shop(client: httpx.Client, server: LiveServer, sentry: SentryReceiver) -> Shopper:
    """Browse, search, view, cart, a declined card, a page view reported by the client, then an error."""
    session_id = f"shopper-{uuid.uuid4().hex[:12]}"
    seller = register(client, "seller")
    admin = create_admin(server, client)
    word = unique_word()
    item = create_item(client, seller, title=f"Teapot {word}", stock=5)
    buyer = register(client, "buyer")
    headers = {**auth(buyer), "X-Session-Id": session_id}
    traces: dict[str, str] = {}

    def call(step: str, method: str, path: str, expected: int, **kwargs: Any) -> httpx.Response:
        r = client.request(method, path, headers={**headers, **kwargs.pop("headers", {})}, **kwargs)
        assert r.status_code == expected, r.text
        assert r.headers["x-session-id"] == session_id
        traces[step] = trace_id_of(r)
        return r

    call("browse", "GET", "/api/v1/items", 200)
    call("search", "GET", "/api/v1/items", 200, params={"q": word})
    call("view", "GET", f"/api/v1/items/{item['id']}", 200)
    call("cart", "PUT", f"/api/v1/cart/items/{item['id']}", 200, json={"quantity": 1})
    r = call(
        "checkout",
        "POST",
        "/api/v1/checkout",
        402,
        json={"payment_method": {"type": "card", "token": "tok_chargeDeclined"}},
        headers={"Idempotency-Key": uuid.uuid4().hex},
    )
    order_id = r.json()["order_id"]
    call(
        "client",
        "POST",
        f"/api/v1/sessions/{session_id}/events",
        202,
        json={"events": [{"at": _now(), "name": "page_view", "page": "payment-failed"}]},
    )
    r = client.post(
        "/api/v1/admin/test-monitoring",
        json={"kind": "error"},
        headers={**auth(admin), "X-Session-Id": session_id},
    )
    assert r.status_code == 500, r.text
    failing_trace = trace_id_of(r)
    sentry_event_id = r.json()["sentry_event_id"]
    assert sentry_event_id
    (event,) = sentry.wait_for_events(
        lambda events: any(e.get("event_id") == sentry_event_id for e in events), what="the error's event"
    )[-1:]
    event = next(e for e in sentry.events() if e.get("event_id") == sentry_event_id)
    return Shopper(
        server, session_id, buyer, admin, word, traces, order_id, failing_trace, sentry_event_id, event
    )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def shopper(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shopper]:
    sentry = SentryReceiver().start()
    env = {
        "SENTRY_DSN": sentry.dsn,
        "MARKET_TRACE_URL_TEMPLATE": TRACE_URL,
        "MARKET_SENTRY_URL_TEMPLATE": SENTRY_URL,
    }
    try:
        with (
            serving(request.param, tmp_path_factory.mktemp(f"replay-{request.param}"), env) as server,
            server.client() as client,
        ):
            yield shop(client, server, sentry)
    finally:
        sentry.stop()


def timeline_of(client: httpx.Client, shopper: Shopper, until: str = "failing") -> dict[str, Any]:
    """The API's timeline, once the recorder has written the failing request (it flushes every second)."""
    deadline = time.monotonic() + 15
    while True:
        r = client.get(f"/api/v1/admin/sessions/{shopper.session_id}", headers=auth(shopper.admin))
        if r.status_code == 200 and any(
            e.get("trace_id") == shopper.failing_trace and e["kind"] == "request"
            for e in r.json()["timeline"]
        ):
            return r.json()
        assert time.monotonic() < deadline, r.text
        time.sleep(0.2)


def test_the_sentry_event_alone_leads_to_the_session_and_its_timeline_tells_the_story(shopper: Shopper):
    event = shopper.sentry_event
    session_id = event["tags"]["session.id"]
    assert session_id == shopper.session_id
    page = event["contexts"]["session"]["url"]
    assert page == f"{shopper.server.base_url}/admin/sessions/{session_id}"
    assert event["tags"]["session.url"] == page

    with shopper.server.client() as client:
        body = timeline_of(client, shopper)
    assert body["session_id"] == session_id
    assert body["user_id"] == shopper.buyer["id"]  # its first signed-in request's user
    entries = body["timeline"]
    moments = [datetime.fromisoformat(e["at"]) for e in entries]
    assert moments == sorted(moments)
    story = [
        (e["kind"], e.get("route") if e["kind"] == "request" else e["name"])
        for e in entries
        if e["kind"] == "event" or e["route"] != "/api/v1/auth/token"
    ]
    assert story == [
        ("request", "/api/v1/items"),
        ("request", "/api/v1/items"),
        ("event", "search"),
        ("request", "/api/v1/items/{item_id}"),
        ("event", "item_viewed"),
        ("request", "/api/v1/cart/items/{item_id}"),
        ("event", "cart_add"),
        ("request", "/api/v1/checkout"),
        ("event", "checkout_started"),
        ("event", "payment_declined"),
        ("event", "page_view"),  # the client's own time: just before it reported the page view
        ("request", "/api/v1/sessions/{session_id}/events"),
        ("request", "/api/v1/admin/test-monitoring"),
    ]
    requests = [e for e in entries if e["kind"] == "request"]
    assert [r["trace_id"] for r in requests] == [
        *(shopper.traces[s] for s in ("browse", "search", "view", "cart", "checkout", "client")),
        shopper.failing_trace,
    ]
    checkout, failing = requests[4], requests[-1]
    assert (checkout["method"], checkout["status"]) == ("POST", 402)
    assert checkout["problem_type"].endswith("/payment-declined")
    assert (failing["status"], failing["sentry_event_id"]) == (500, shopper.sentry_event_id)
    assert failing["problem_type"].endswith("/internal-error") or failing["problem_type"]
    assert all(r["duration_ms"] > 0 for r in requests)
    search = next(e for e in entries if e["kind"] == "event" and e["name"] == "search")
    assert (search["trace_id"], search["result_count"], search["source"]) == (
        shopper.traces["search"],
        1,
        "server",
    )
    declined = next(e for e in entries if e["kind"] == "event" and e["name"] == "payment_declined")
    assert declined["order_id"] == shopper.order_id and declined["trace_id"] == shopper.traces["checkout"]
    page_view = next(e for e in entries if e["kind"] == "event" and e["name"] == "page_view")
    assert (page_view["source"], page_view["page"]) == ("client", "payment-failed")
    # Routes are templates: no raw path, no query string; no e-mail or token anywhere.
    text = json.dumps(body)
    assert "?" not in "".join(r["route"] for r in requests)
    assert shopper.buyer["email"] not in text and shopper.admin["email"] not in text
    assert shopper.buyer["Authorization"].split()[1] not in text


def test_one_search_finds_the_session_by_trace_order_email_or_errors(shopper: Shopper):
    with shopper.server.client() as client:
        timeline_of(client, shopper)
        for params in (
            {"trace_id": shopper.failing_trace},
            {"trace_id": shopper.traces["search"].upper()},
            {"order_id": shopper.order_id},
            {"email": shopper.buyer["email"]},
            {"user_id": shopper.buyer["id"], "has_errors": "true"},
        ):
            r = client.get("/api/v1/admin/sessions", params=params, headers=auth(shopper.admin))
            assert r.status_code == 200, r.text
            (found,) = r.json()["items"]
            assert found["session_id"] == shopper.session_id, params
            assert found["errors"] == 1 and found["last_route"] == "/api/v1/admin/test-monitoring"
            assert r.json()["next_cursor"] is None
        r = client.get(
            "/api/v1/admin/sessions",
            params={"user_id": shopper.buyer["id"], "has_errors": "false"},
            headers=auth(shopper.admin),
        )
        assert r.json()["items"] == []
        r = client.get(
            "/api/v1/admin/sessions", params={"email": "nobody@example.com"}, headers=auth(shopper.admin)
        )
        assert r.status_code == 200 and r.json()["items"] == []


def test_the_cli_shows_the_same_json_as_the_api(shopper: Shopper):
    with shopper.server.client() as client:
        api = timeline_of(client, shopper)
        found = client.get(
            "/api/v1/admin/sessions", params={"trace_id": shopper.failing_trace}, headers=auth(shopper.admin)
        ).json()
    assert json.loads(run_market(shopper.server, "sessions", "show", shopper.session_id, "--json")) == api
    cli = json.loads(
        run_market(shopper.server, "sessions", "find", "--trace-id", shopper.failing_trace, "--json")
    )
    assert cli == found
    by_email = json.loads(
        run_market(shopper.server, "sessions", "find", "--email", shopper.buyer["email"], "--json")
    )
    assert [s["session_id"] for s in by_email["items"]] == [shopper.session_id]
    table = run_market(shopper.server, "sessions", "show", shopper.session_id)
    assert shopper.failing_trace in table and "payment_declined" in table
    assert TRACE_URL.replace("{trace_id}", shopper.failing_trace) in table
    assert SENTRY_URL.replace("{event_id}", shopper.sentry_event_id) in table


def test_the_admin_api_is_for_admins_and_unknown_sessions_are_404(shopper: Shopper):
    with shopper.server.client() as client:
        r = client.get(f"/api/v1/admin/sessions/{shopper.session_id}", headers=auth(shopper.buyer))
        assert_problem(r, 403)
        assert_problem(client.get("/api/v1/admin/sessions"), 401)
        r = client.get("/api/v1/admin/sessions/never-seen-" + uuid.uuid4().hex, headers=auth(shopper.admin))
        assert_problem(r, 404)
        r = client.get("/api/v1/admin/sessions", params={"trace_id": "xyz"}, headers=auth(shopper.admin))
        assert_problem(r, 400)
        r = client.get("/api/v1/admin/sessions", params={"limit": 101}, headers=auth(shopper.admin))
        assert_problem(r, 400)
        r = client.get("/api/v1/admin/sessions", params={"cursor": "nonsense"}, headers=auth(shopper.admin))
        assert_problem(r, 400)
        for params, field in (
            ({"usr_id": shopper.buyer["id"]}, "usr_id"),
            ({"has_errors": "null"}, "has_errors"),
        ):
            r = client.get("/api/v1/admin/sessions", params=params, headers=auth(shopper.admin))
            assert_problem(r, 400, fields={field})


def test_a_client_adds_events_only_to_its_own_session_in_small_valid_batches(shopper: Shopper):
    path = f"/api/v1/sessions/{shopper.session_id}/events"
    event = {"at": _now(), "name": "page_view"}
    with shopper.server.client() as client:
        assert_problem(client.post(path, json={"events": [event]}), 403)
        r = client.post(path, json={"events": [event]}, headers={"X-Session-Id": "someone-else"})
        assert_problem(r, 403)
        # An invalid id (too long, or not ASCII once the server reads it) is replaced by a new one, as every
        # route does: it names another session (403), it is not a malformed request (it was a 400).
        for invalid in ("x" * 65, "sess-é" * 12):
            r = client.post(path, json={"events": [event]}, headers={"X-Session-Id": invalid.encode()})
            assert_problem(r, 403)
        own = {"X-Session-Id": shopper.session_id}
        assert_problem(client.post(path, json={"events": [event] * 21}, headers=own), 422)
        assert_problem(client.post(path, json={"events": []}, headers=own), 422)
        r = client.post(path, json={"events": [{"at": "yesterday", "name": "x"}]}, headers=own)
        assert_problem(r, 422)
        r = client.post(path, json={"events": [{**event, "nested": {"a": 1}}]}, headers=own)
        assert_problem(r, 422)
        assert_problem(client.post(path, content=b"{not json", headers=own), 400)
        r = client.post(path, json={"events": [{**event, "note": "write to me@example.com"}]}, headers=own)
        assert r.status_code == 202 and r.json() == {"accepted": 1}


def test_an_operator_sees_a_request_at_once_not_a_flush_interval_later(shopper: Shopper):
    """One process: what it answered is written before an admin reads sessions (recording buffers ~1 s)."""
    session_id = f"at-once-{uuid.uuid4().hex[:8]}"
    with shopper.server.client() as client:
        r = client.get("/api/v1/items", headers={"X-Session-Id": session_id})
        assert r.status_code == 200
        event = {"at": _now(), "name": "page_view"}
        r = client.post(
            f"/api/v1/sessions/{session_id}/events",
            json={"events": [event]},
            headers={"X-Session-Id": session_id},
        )
        assert r.status_code == 202
        r = client.get(f"/api/v1/admin/sessions/{session_id}", headers=auth(shopper.admin))
        assert r.status_code == 200, r.text
        assert [entry["kind"] for entry in r.json()["timeline"]] == ["request", "event", "request"]


def test_probes_and_metrics_scrapes_are_not_part_of_any_session(shopper: Shopper):
    session_id = f"probe-{uuid.uuid4().hex[:8]}"
    with shopper.server.client() as client:
        assert client.get("/health/live", headers={"X-Session-Id": session_id}).status_code == 200
        assert client.get("/metrics", headers={"X-Session-Id": session_id}).status_code == 200
        client.get("/api/v1/items", headers={"X-Session-Id": session_id + "-api"})
        # The API request after them is written in the same batch or a later one: once it is there, they
        # would be too.
        deadline = time.monotonic() + 15
        while (
            client.get(f"/api/v1/admin/sessions/{session_id}-api", headers=auth(shopper.admin)).status_code
            != 200
        ):
            assert time.monotonic() < deadline, "the API request was never recorded"
            time.sleep(0.2)
        r = client.get(f"/api/v1/admin/sessions/{session_id}", headers=auth(shopper.admin))
        assert_problem(r, 404)


def test_e_mail_addresses_beyond_ascii_are_filtered_from_client_events_and_searches(shopper: Shopper):
    """The addresses this service accepts for accounts, accented or not Latin, are e-mail addresses too: kept
    out of what a client reports and what is searched, as ASCII ones are."""
    session_id = f"unicode-mail-{uuid.uuid4().hex[:12]}"
    addresses = [f"zoé-{uuid.uuid4().hex[:6]}@example.com", "anna@exämple.de", "пётр@почта.рф"]
    own = {"X-Session-Id": session_id}
    with shopper.server.client() as client:
        r = client.post(
            "/api/v1/auth/register",
            json={
                "email": addresses[0],
                "password": "correct horse battery",
                "display_name": "Zoé",
                "role": "buyer",
            },
        )
        assert r.status_code == 201, r.text  # an account's e-mail address
        notes = {f"note{n}": f"write to {address}" for n, address in enumerate(addresses)}
        r = client.post(
            f"/api/v1/sessions/{session_id}/events",
            json={"events": [{"at": _now(), "name": "contact", **notes}]},
            headers=own,
        )
        assert r.status_code == 202, r.text
        for address in addresses:
            assert client.get("/api/v1/items", params={"q": address}, headers=own).status_code == 200
        r = client.get(f"/api/v1/admin/sessions/{session_id}", headers=auth(shopper.admin))
    assert r.status_code == 200, r.text
    events = [e for e in r.json()["timeline"] if e["kind"] == "event"]
    contact = next(e for e in events if e["name"] == "contact")
    assert [contact[name] for name in notes] == ["write to [Filtered]"] * len(addresses)
    assert [e["query"] for e in events if e["name"] == "search"] == ["[Filtered]"] * len(addresses)
    for address in addresses:
        assert address.split("@")[0] not in r.text and address.split("@")[1] not in r.text
