"""Abuse limits over HTTP, with limits ON: per-IP limits on sign-in (API and admin form), registration and
checkout; the per-account sign-in limit across addresses; and the limits holding across `--workers 2` and across
two replicas that share one Redis. Health and metrics are never limited."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import redis

from tests.support.live_server import LiveServer, auth, register, serving, start_server, stop_server

from .helpers import assert_problem

TOKEN = "/api/v1/auth/token"
REGISTER = "/api/v1/auth/register"
CHECKOUT = "/api/v1/checkout"
RATE_LIMITED = "https://market.dev/problems/rate-limited"
REDIS_URL = os.environ.get("MARKET_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
LIMITS_ON = {"MARKET_RATE_LIMITS": "on"}


def _bad_login(client: httpx.Client, email: str | None = None) -> httpx.Response:
    email = email or f"nobody-{uuid.uuid4().hex[:8]}@example.com"
    return client.post(TOKEN, json={"email": email, "password": "not the password"})


def _from(server: LiveServer, address: str) -> httpx.Client:
    """A client whose requests come from `address` (any 127/8 address is loopback on Linux)."""
    return server.client(transport=httpx.HTTPTransport(local_address=address))


def assert_rate_limited(response: httpx.Response, window_s: int) -> None:
    assert_problem(response, 429, type_uri=RATE_LIMITED)
    retry_after = response.headers["retry-after"]
    assert retry_after.isdigit() and 1 <= int(retry_after) <= window_s, retry_after


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    env = {
        **LIMITS_ON,
        "MARKET_RATE_LIMIT_SIGN_IN": "3/1m",
        "MARKET_RATE_LIMIT_REGISTER": "3/1h",
        "MARKET_RATE_LIMIT_CHECKOUT": "1/1m",
        "MARKET_RATE_LIMIT_SESSION_EVENTS": "2/1m",
    }
    with serving("sqlite", tmp_path_factory.mktemp("limits"), env) as server:
        yield server


def test_a_sign_in_flood_from_one_address_gets_429_problems_with_retry_after(limited):
    with _from(limited, "127.0.0.3") as client:
        for _ in range(3):
            assert _bad_login(client).status_code == 401
        assert_rate_limited(_bad_login(client), 60)
        # The admin dashboard's form counts against the same sign-in limit of the address.
        form = client.post("/admin/login", data={"email": "a@example.com", "password": "not the password"})
        assert_rate_limited(form, 60)
    with _from(limited, "127.0.0.4") as other:  # another address is not affected
        assert _bad_login(other).status_code == 401


def test_health_and_metrics_are_never_rate_limited(limited):
    with _from(limited, "127.0.0.5") as client:
        for _ in range(4):
            _bad_login(client)
        for _ in range(20):
            assert client.get("/health/live").status_code == 200
            assert client.get("/health/ready").status_code == 200
            assert client.get("/metrics").status_code == 200


def test_registrations_from_one_address_are_limited(limited):
    with _from(limited, "127.0.0.6") as client:
        for _ in range(3):
            email = f"new-{uuid.uuid4().hex[:8]}@example.com"
            body = {"email": email, "password": "correct horse battery", "display_name": "N", "role": "buyer"}
            assert client.post(REGISTER, json=body).status_code == 201
        body["email"] = f"new-{uuid.uuid4().hex[:8]}@example.com"
        assert_rate_limited(client.post(REGISTER, json=body), 3600)


def test_checkouts_from_one_address_are_limited(limited):
    with limited.client() as setup:
        buyer = register(setup, "buyer")
    card = {"payment_method": {"type": "card", "token": "tok_visa"}}
    with _from(limited, "127.0.0.7") as client:
        first = client.post(CHECKOUT, json=card, headers={**auth(buyer), "Idempotency-Key": uuid.uuid4().hex})
        assert first.status_code == 409, first.text  # the cart is empty: not refused for its rate
        again = client.post(CHECKOUT, json=card, headers={**auth(buyer), "Idempotency-Key": uuid.uuid4().hex})
        assert_rate_limited(again, 60)


def test_session_event_batches_from_one_address_are_limited(limited):
    session = f"limited-{uuid.uuid4().hex[:8]}"
    path = f"/api/v1/sessions/{session}/events"
    with _from(limited, "127.0.0.8") as client:
        for _ in range(2):
            at = datetime.now(UTC).isoformat()
            r = client.post(
                path, json={"events": [{"at": at, "name": "page_view"}]}, headers={"X-Session-Id": session}
            )
            assert r.status_code == 202, r.text
        again = client.post(
            path, json={"events": [{"at": at, "name": "page_view"}]}, headers={"X-Session-Id": session}
        )
        assert_rate_limited(again, 60)


def test_the_limited_routes_document_429_as_a_problem_and_sign_in_stays_open(limited):
    with limited.client() as client:
        paths = client.get("/schema/openapi.json").json()["paths"]
    for path in (TOKEN, REGISTER, CHECKOUT, "/api/v1/sessions/{session_id}/events"):
        response = paths[path]["post"]["responses"]["429"]
        assert "application/problem+json" in response["content"], path
    assert "429" not in paths["/health/live"]["get"]["responses"]
    for path in (TOKEN, REGISTER):  # a rate limit is a guard, but needs no sign-in
        assert "security" not in paths[path]["post"], path
    assert paths["/api/v1/sessions/{session_id}/events"]["post"].get("security", []) == []


def test_an_account_is_locked_after_failed_sign_ins_from_any_address(tmp_path):
    env = {**LIMITS_ON, "MARKET_RATE_LIMIT_ACCOUNT": "3/15m", "MARKET_RATE_LIMIT_SIGN_IN": "100/1m"}
    with serving("sqlite", tmp_path, env) as server:
        with server.client() as setup:
            victim = register(setup, "buyer")
            bystander = register(setup, "buyer")
        with _from(server, "127.0.0.2") as one, _from(server, "127.0.0.3") as two:
            assert _bad_login(one, victim["email"]).status_code == 401
            assert _bad_login(two, victim["email"]).status_code == 401
            assert _bad_login(one, victim["email"]).status_code == 401
            right = two.post(TOKEN, json={"email": victim["email"], "password": victim["password"]})
            assert_rate_limited(right, 900)
            other = one.post(TOKEN, json={"email": bystander["email"], "password": bystander["password"]})
            assert other.status_code == 200, other.text


def test_wrong_current_passwords_lock_the_account_like_failed_sign_ins(tmp_path):
    """Whoever holds a token must not get unlimited guesses at the password through POST /me/password."""
    env = {**LIMITS_ON, "MARKET_RATE_LIMIT_ACCOUNT": "3/15m", "MARKET_RATE_LIMIT_SIGN_IN": "100/1m"}
    with serving("sqlite", tmp_path, env) as server, server.client() as client:
        victim = register(client, "buyer")
        guesses = [
            client.post(
                "/api/v1/me/password",
                headers=auth(victim),
                json={"current_password": f"guess number {n}", "new_password": "the thief's password"},
            )
            for n in range(4)
        ]
        assert [r.status_code for r in guesses[:3]] == [401, 401, 401]
        assert_rate_limited(guesses[3], 900)
        right = client.post(TOKEN, json={"email": victim["email"], "password": victim["password"]})
        assert_rate_limited(right, 900)
        paths = client.get("/schema/openapi.json").json()["paths"]
    assert "application/problem+json" in paths["/api/v1/me/password"]["post"]["responses"]["429"]["content"]


def test_with_redis_down_the_sign_in_limit_still_holds_in_the_process(tmp_path):
    """An outage of the shared store neither fails sign-ins nor lifts the limit: this process counts alone."""
    env = {**LIMITS_ON, "MARKET_REDIS_URL": "redis://127.0.0.1:1/0", "MARKET_RATE_LIMIT_SIGN_IN": "3/1m"}
    with serving("sqlite", tmp_path, env) as server, _from(server, "127.0.0.5") as client:
        statuses = [_bad_login(client).status_code for _ in range(5)]
        logged = server.log.read_text()
    assert statuses == [401, 401, 401, 429, 429], statuses
    assert logged.count("rate limit store unavailable") == 1


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A Redis key prefix of the test's own, its keys deleted afterwards."""
    prefix = f"market-test-{uuid.uuid4().hex[:12]}"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{prefix}:*"))
    if keys:
        client.delete(*keys)
    client.close()


def _flood(base_urls: list[str], requests: int) -> list[int]:
    """Bad sign-ins, each on a new connection (so that workers share them), spread over `base_urls`."""

    def one(n: int) -> int:
        with httpx.Client(base_url=base_urls[n % len(base_urls)], timeout=30) as client:
            return _bad_login(client).status_code

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(requests)))


def _shared_limits(prefix: str) -> dict[str, str]:
    return {
        **LIMITS_ON,
        "MARKET_REDIS_URL": REDIS_URL,
        "MARKET_REDIS_PREFIX": prefix,
        "MARKET_RATE_LIMIT_SIGN_IN": "5/1m",
        # The window is under test, not the cap on one address's sign-ins in progress (per process).
        "MARKET_RATE_LIMIT_SIGN_IN_CONCURRENCY": "100",
        "MARKET_SECRET_KEY": "a-shared-secret-key-of-at-least-32-bytes!",
    }


def test_the_sign_in_limit_holds_across_two_workers_sharing_redis(tmp_path, redis_prefix):
    server = start_server(
        f"sqlite:///{tmp_path / 'market.db'}",
        tmp_path,
        "sqlite",
        _shared_limits(redis_prefix),
        ("--workers", "2"),
    )
    try:
        statuses = _flood([server.base_url], 30)
    finally:
        stop_server(server)
    # Admitted: 401 (wrong password), or 503 when the hashing cap shed it on this busy machine.
    assert statuses.count(429) == 25, statuses
    assert all(status in (401, 503) for status in statuses if status != 429), statuses


def test_the_sign_in_limit_holds_across_two_replicas_sharing_redis(tmp_path: Path, redis_prefix):
    replicas = []
    try:
        for name in ("a", "b"):
            workdir = tmp_path / name
            workdir.mkdir()
            replicas.append(
                start_server(
                    f"sqlite:///{workdir / 'market.db'}", workdir, "sqlite", _shared_limits(redis_prefix)
                )
            )
        statuses = _flood([r.base_url for r in replicas], 30)
    finally:
        for replica in replicas:
            stop_server(replica)
    # Admitted: 401 (wrong password), or 503 when the hashing cap shed it on this busy machine.
    assert statuses.count(429) == 25, statuses
    assert all(status in (401, 503) for status in statuses if status != 429), statuses


def test_with_limits_off_parallel_registrations_queue_for_hashing_and_none_is_refused(tmp_path):
    """MARKET_RATE_LIMITS=off turns every limit off: registrations beyond the hashing cap wait for a slot
    rather than getting the 503 the cap sheds with limits on (a one-slot cap and a 1 ms wait made five of
    twelve parallel registrations 503 before)."""
    env = {"MARKET_PASSWORD_HASH_CONCURRENCY": "1", "MARKET_PASSWORD_HASH_WAIT_MS": "1"}
    with serving("sqlite", tmp_path, env) as server, server.client() as client:

        def sign_up(n: int) -> int:
            body = {
                "email": f"parallel-{n}-{uuid.uuid4().hex[:8]}@example.com",
                "password": "correct horse battery",
                "display_name": f"Parallel {n}",
                "role": "buyer",
            }
            return client.post("/api/v1/auth/register", json=body).status_code

        with ThreadPoolExecutor(12) as pool:
            statuses = list(pool.map(sign_up, range(12)))
    assert statuses == [201] * 12, statuses
