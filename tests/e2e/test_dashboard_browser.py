"""The admin dashboard in a real browser: Debian's Chromium, headless, driven by Playwright.

A scripted shopping mix goes through the API, then an admin signs in through the form, reads the funnel off the
page (it must equal GET /admin/analytics/funnel over the same period) and presses the `message` monitoring
button, whose result must name the request's trace id. Playwright never downloads a browser here: it drives
/usr/bin/chromium (`apt-get install chromium`; .ci/run installs it). Without it the test is skipped on a
developer's machine and fails in CI."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, sync_playwright

from market.adapters.http.dashboard import COOKIE
from tests.support.live_server import LiveServer, auth, register

from .helpers import CHROMIUM, CHROMIUM_ARGS, HEX32, create_admin, create_item, trace_id_of, unique_word

STEPS = ("browsed", "carted", "checkout_started", "paid")


@pytest.fixture
def browser(live_server: LiveServer) -> Iterator[Browser]:
    """Per test, after the server: while Playwright's sync API is open its event loop counts as running in
    this thread, and fixtures that set up databases (asyncio.run) would fail."""
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(reason + "; .ci/run should have installed it")
        pytest.skip(reason)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def _rfc3339(moment: datetime) -> str:
    # To the microsecond: the live server is shared, and the test before this one may have browsed within the
    # same second.
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _shop(client: httpx.Client) -> None:
    """Four sessions: two pay, one is declined, one only looks (and searches for something nobody sells)."""
    seller = register(client, "seller")
    word = unique_word()
    item = create_item(client, seller, title=f"Mug {word}", stock=20)
    plans = [("tok_visa", True), ("tok_chargeDeclined", True), ("tok_visa", False), (None, True)]
    for token, searches in plans:
        buyer = register(client, "buyer")
        headers = {**auth(buyer), "X-Session-Id": f"browser-test-{uuid.uuid4().hex[:12]}"}
        if searches:
            assert client.get("/api/v1/items", params={"q": word}, headers=headers).status_code == 200
        assert client.get(f"/api/v1/items/{item['id']}", headers=headers).status_code == 200
        if token is None:
            client.get("/api/v1/items", params={"q": unique_word()}, headers=headers)
            continue
        r = client.put(f"/api/v1/cart/items/{item['id']}", json={"quantity": 1}, headers=headers)
        assert r.status_code == 200, r.text
        r = client.post(
            "/api/v1/checkout",
            json={"payment_method": {"type": "card", "token": token}},
            headers={**headers, "Idempotency-Key": uuid.uuid4().hex},
        )
        assert r.status_code == (201 if token == "tok_visa" else 402), r.text


def test_admin_reads_the_funnel_and_tests_monitoring_in_a_browser(
    live_server: LiveServer, client: httpx.Client, browser: Browser, tmp_path: Path
):
    admin = create_admin(live_server, client)
    start = datetime.now(UTC)
    _shop(client)
    period = {"from": _rfc3339(start), "to": _rfc3339(datetime.now(UTC) + timedelta(seconds=1))}
    funnel = client.get("/api/v1/admin/analytics/funnel", params=period, headers=auth(admin))
    assert funnel.status_code == 200, funnel.text
    api = {step["name"]: step["sessions"] for step in funnel.json()["steps"]}
    assert api == {"browsed": 4, "carted": 3, "checkout_started": 3, "paid": 2}

    context = browser.new_context(viewport={"width": 1366, "height": 768})
    page = context.new_page()
    elsewhere: list[str] = []
    console_errors: list[str] = []  # a Content-Security-Policy violation is reported here
    page.on(
        "console", lambda message: console_errors.append(message.text) if message.type == "error" else None
    )
    page.on(
        "request",
        lambda request: (
            None if request.url.startswith(live_server.base_url) else elsewhere.append(request.url)
        ),
    )
    try:
        page.goto(f"{live_server.base_url}/admin/dashboard")
        assert page.url == f"{live_server.base_url}/admin/login"  # no session yet
        page.get_by_label("E-mail").fill(admin["email"])
        page.get_by_label("Password").fill(admin["password"])
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url("**/admin/dashboard")
        (cookie,) = [c for c in context.cookies() if c["name"] == COOKIE]
        assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict"
        assert cookie["path"] == "/admin"

        page.goto(f"{live_server.base_url}/admin/dashboard?from={period['from']}&to={period['to']}")
        shown = {
            step: int(page.get_by_test_id(f"funnel-{step}").inner_text().replace("\u202f", ""))
            for step in STEPS
        }
        assert shown == api
        conversion = {step["name"]: step["conversion"] for step in funnel.json()["steps"]}
        for step in STEPS:
            text = page.get_by_test_id(f"funnel-{step}-conversion").inner_text()
            assert text == f"{conversion[step] * 100:.1f} %", (step, text)

        with page.expect_response(lambda r: r.url.endswith("/admin/dashboard/test-monitoring")) as pressed:
            page.get_by_test_id("monitoring-message").click()
        result = page.get_by_test_id("monitoring-result")
        result.wait_for()
        trace_id = page.get_by_test_id("monitoring-trace-id").inner_text()
        assert HEX32.match(trace_id), trace_id
        assert pressed.value.status == 200
        assert trace_id == trace_id_of(httpx.Response(200, headers=pressed.value.headers))
        assert "Sentry message" in result.inner_text()
        # The page after the button keeps the period it was pressed on.
        assert int(page.get_by_test_id("funnel-paid").inner_text()) == api["paid"]
        assert elsewhere == []  # nothing is loaded from anywhere else
        # The stylesheet is applied (the page's background is its colour) and the CSP refused nothing.
        background = page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert background == "rgb(238, 241, 245)", background
        assert console_errors == []
    finally:
        page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
        context.close()
