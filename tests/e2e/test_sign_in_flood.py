"""A flood of bad sign-ins from many addresses against `market serve` (limits on): the password-hashing budget
refuses its excess cheaply (503 problem + Retry-After, counted in `market.rate_limit.refused`), while an account
signing in from a device it signed in from before (the `market_device` cookie) keeps getting in. And with
MARKET_RATE_LIMITS=off, none of it applies. Functional only: no timings are asserted."""

from __future__ import annotations

import re
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from itertools import count

import httpx
import pytest

from tests.support.live_server import LiveServer, register, serving

from .helpers import assert_problem
from .pages import BROWSER, assert_html_page

TOKEN = "/api/v1/auth/token"
BUSY = "https://market.dev/problems/busy"
RATE_LIMITED = "https://market.dev/problems/rate-limited"
FLOOD_ADDRESSES = 40


def _refused(client: httpx.Client) -> dict[str, float]:
    text = client.get("/metrics").text
    found = re.findall(
        r'market_rate_limit_refused_total\{[^}]*market_rate_limit_bucket="([^"]+)"[^}]*\} (\S+)', text
    )
    return {bucket: float(value) for bucket, value in found}


@pytest.fixture(scope="module")
def flooded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    env = {
        "MARKET_RATE_LIMITS": "on",
        "MARKET_TRUSTED_PROXIES": "127.0.0.1/32",  # X-Forwarded-For stands for the flood's many addresses
        # Per-address limits out of the way: the hashing budget is under test.
        "MARKET_RATE_LIMIT_SIGN_IN": "100000/1m",
        "MARKET_RATE_LIMIT_SIGN_IN_BURST": "100000/10s",
        "MARKET_RATE_LIMIT_SIGN_IN_CONCURRENCY": "100",
        "MARKET_PASSWORD_HASH_CONCURRENCY": "2",
        "MARKET_PASSWORD_HASH_RESERVED": "1",
        # Short: one queue for all would make the good account's sign-ins wait behind the flood and fail.
        "MARKET_PASSWORD_HASH_WAIT_MS": "300",
    }
    with serving("sqlite", tmp_path_factory.mktemp("flood"), env) as server:
        yield server


class Flood:
    """Threads sending bad sign-ins (unknown e-mails) from FLOOD_ADDRESSES addresses until stopped."""

    def __init__(self, server: LiveServer, threads: int = 12) -> None:
        self.server = server
        self.stop = threading.Event()
        self.answers: Counter[int] = Counter()
        self.busy: list[httpx.Response] = []
        self._numbers = count()
        self._threads = [threading.Thread(target=self._run) for _ in range(threads)]

    def _run(self) -> None:
        with self.server.client() as client:
            while not self.stop.is_set():
                n = next(self._numbers)
                response = client.post(
                    TOKEN,
                    json={"email": f"victim-{uuid.uuid4().hex[:8]}@example.com", "password": "wrong guess"},
                    headers={"X-Forwarded-For": f"10.2.0.{n % FLOOD_ADDRESSES + 1}"},
                )
                self.answers[response.status_code] += 1
                if response.status_code == 503 and len(self.busy) < 3:
                    self.busy.append(response)

    def __enter__(self) -> Flood:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(timeout=60)


def _sign_in(
    client: httpx.Client, account: dict[str, str], address: str, device: str | None
) -> httpx.Response:
    headers = {"X-Forwarded-For": address}
    if device:
        headers["Cookie"] = f"market_device={device}"
    return client.post(
        TOKEN, json={"email": account["email"], "password": account["password"]}, headers=headers
    )


def _device_cookie(response: httpx.Response) -> str:
    set_cookie = response.headers.get("set-cookie", "")
    match = re.match(r"market_device=([^;]+);", set_cookie)
    assert match, set_cookie
    for attribute in ("HttpOnly", "Secure", "SameSite=Strict", "Path=/"):
        assert attribute.lower() in set_cookie.lower(), set_cookie
    return match[1]


def test_a_distributed_flood_is_refused_cheaply_while_a_known_device_keeps_signing_in(flooded):
    with flooded.client() as client:
        account = register(client, "buyer")
        first = _sign_in(client, account, "10.9.0.1", None)
        assert first.status_code == 200, first.text
        device = _device_cookie(first)
        with Flood(flooded) as flood:
            while sum(flood.answers.values()) < 20:  # the flood is under way
                flood.stop.wait(0.05)
            for n in range(2, 8):
                # From a new address each time (a phone on the move): the device, not the address, is known.
                again = _sign_in(client, account, f"10.9.0.{n}", device)
                assert again.status_code == 200, (again.text, flood.answers)
            assert flood.answers[503] > 0, flood.answers  # refused by the budget, not queued
            during = sum(flood.answers.values())
        assert flood.answers.keys() <= {401, 503}, flood.answers  # nothing else, never a 500
        assert during > 0
        refusal = flood.busy[0]
        assert_problem(refusal, 503, type_uri=BUSY)
        assert refusal.headers["retry-after"].isdigit()
        assert _refused(client).get("password-hashing", 0) >= 1


def test_a_known_device_cookie_grants_no_password_and_no_other_account(flooded):
    with flooded.client() as client:
        owner, other = register(client, "buyer"), register(client, "buyer")
        device = _device_cookie(_sign_in(client, owner, "10.9.1.1", None))
        wrong = client.post(
            TOKEN,
            json={"email": owner["email"], "password": "not the password"},
            headers={"Cookie": f"market_device={device}", "X-Forwarded-For": "10.9.1.2"},
        )
        assert_problem(wrong, 401)
        # Presented with another account, the cookie is simply not recognised: that account signs in as usual.
        assert _sign_in(client, other, "10.9.1.3", device).status_code == 200
        for forged in (device[:-1] + ("0" if device[-1] != "0" else "1"), "x" * 500, "a.b.c"):
            assert _sign_in(client, owner, "10.9.1.4", forged).status_code == 200


def test_an_address_gets_a_small_burst_then_429_with_retry_after(tmp_path):
    env = {"MARKET_RATE_LIMITS": "on", "MARKET_RATE_LIMIT_SIGN_IN_BURST": "3/10s"}
    with serving("sqlite", tmp_path, env) as server, server.client() as client:
        bad = {"email": "nobody@example.com", "password": "not the password"}
        for _ in range(3):
            assert client.post(TOKEN, json=bad).status_code == 401
        refused = client.post(TOKEN, json=bad)
        assert_problem(refused, 429, type_uri=RATE_LIMITED)
        assert 1 <= int(refused.headers["retry-after"]) <= 10
        assert _refused(client).get("sign-in-burst") == 1


def test_a_browser_refused_at_the_admin_sign_in_gets_a_page_not_problem_json(tmp_path):
    env = {"MARKET_RATE_LIMITS": "on", "MARKET_RATE_LIMIT_SIGN_IN_BURST": "2/10s"}
    with serving("sqlite", tmp_path, env) as server, server.client() as client:
        bad = {"email": "nobody@example.com", "password": "not the password"}
        for _ in range(2):
            client.post("/admin/login", data=bad, headers=BROWSER)
        refused = client.post("/admin/login", data=bad, headers=BROWSER)
        text = assert_html_page(refused, 429)
        assert 1 <= int(refused.headers["retry-after"]) <= 10
        assert "Too many" in text


def test_with_rate_limits_off_nothing_is_limited_and_no_device_cookie_is_set(tmp_path):
    env = {"MARKET_RATE_LIMITS": "off", "MARKET_RATE_LIMIT_SIGN_IN_BURST": "1/10s"}
    with serving("sqlite", tmp_path, env) as server, server.client() as client:
        account = register(client, "buyer")
        bad = {"email": account["email"], "password": "not the password"}
        assert [client.post(TOKEN, json=bad).status_code for _ in range(25)] == [401] * 25
        good = client.post(TOKEN, json={"email": account["email"], "password": account["password"]})
        assert good.status_code == 200, good.text
        assert "market_device" not in good.headers.get("set-cookie", "")
        assert _refused(client) == {}
