"""Session replay in a real browser (Debian's Chromium, headless, driven by Playwright; see
test_dashboard_browser.py): from the dashboard's list of sessions that hit a 5xx, open the shopper's session and
see the failing request, its trace id equal to the one the client got, and the business events before it."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, sync_playwright

from tests.support.live_server import LiveServer, auth, register

from .helpers import CHROMIUM, CHROMIUM_ARGS, create_admin, create_item, trace_id_of, unique_word


@pytest.fixture
def browser(live_server: LiveServer) -> Iterator[Browser]:
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(reason + "; .ci/run should have installed it")
        pytest.skip(reason)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def _shop_then_fail(client: httpx.Client, admin: dict[str, str]) -> tuple[str, str, str]:
    """(session id, the failing request's trace id, the declined checkout's trace id)."""
    session_id = f"browser-replay-{uuid.uuid4().hex[:10]}"
    seller, buyer = register(client, "seller"), register(client, "buyer")
    word = unique_word()
    item = create_item(client, seller, title=f"Kettle {word}", stock=5)
    headers = {**auth(buyer), "X-Session-Id": session_id}
    assert client.get("/api/v1/items", params={"q": word}, headers=headers).status_code == 200
    r = client.put(f"/api/v1/cart/items/{item['id']}", json={"quantity": 1}, headers=headers)
    assert r.status_code == 200, r.text
    r = client.post(
        "/api/v1/checkout",
        json={"payment_method": {"type": "card", "token": "tok_chargeDeclined"}},
        headers={**headers, "Idempotency-Key": uuid.uuid4().hex},
    )
    assert r.status_code == 402, r.text
    declined_trace = trace_id_of(r)
    r = client.post(
        "/api/v1/admin/test-monitoring",
        json={"kind": "error"},
        headers={**auth(admin), "X-Session-Id": session_id},
    )
    assert r.status_code == 500, r.text
    failing_trace = trace_id_of(r)
    deadline = time.monotonic() + 15  # the recorder writes every second
    while True:
        r = client.get(f"/api/v1/admin/sessions/{session_id}", headers=auth(admin))
        if r.status_code == 200 and any(e.get("trace_id") == failing_trace for e in r.json()["timeline"]):
            return session_id, failing_trace, declined_trace
        assert time.monotonic() < deadline, r.text
        time.sleep(0.2)


def test_an_admin_opens_the_failing_session_from_the_dashboard_and_sees_what_led_to_it(
    live_server: LiveServer, client: httpx.Client, browser: Browser, tmp_path: Path
):
    admin = create_admin(live_server, client)
    session_id, failing_trace, declined_trace = _shop_then_fail(client, admin)

    context = browser.new_context(viewport={"width": 1366, "height": 900})
    page = context.new_page()
    console_errors: list[str] = []  # a Content-Security-Policy violation is reported here
    page.on(
        "console", lambda message: console_errors.append(message.text) if message.type == "error" else None
    )
    try:
        page.goto(f"{live_server.base_url}/admin/sessions/{session_id}")
        assert page.url == f"{live_server.base_url}/admin/login"  # the same sign-in as the dashboard
        page.get_by_label("E-mail").fill(admin["email"])
        page.get_by_label("Password").fill(admin["password"])
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url("**/admin/dashboard")

        page.get_by_test_id("failing-session-link").filter(has_text=session_id).click()
        page.wait_for_url(f"**/admin/sessions/{session_id}")
        assert page.get_by_test_id("session-id").inner_text() == session_id
        failing = page.get_by_test_id("failing-request")
        assert failing.count() == 1
        assert failing.get_by_test_id("trace-id").inner_text() == failing_trace
        assert failing.get_by_test_id("status").inner_text() == "500"
        assert "/api/v1/admin/test-monitoring" in failing.inner_text()
        # What came before it: the business events, in order, and the declined checkout's own request.
        rows = page.locator("[data-testid=timeline] tbody tr")
        texts = [
            rows.nth(i).get_attribute("data-name") or rows.nth(i).get_attribute("data-testid")
            for i in range(rows.count())
        ]
        failing_at = texts.index("failing-request")
        events_before = [t for t in texts[:failing_at] if t not in ("request", "failing-request")]
        assert events_before == ["search", "cart_add", "checkout_started", "payment_declined"]
        declined_row = page.locator("tr[data-testid=request]").filter(has_text="/api/v1/checkout")
        assert declined_row.get_by_test_id("trace-id").inner_text() == declined_trace
        assert declined_row.get_by_test_id("status").inner_text() == "402"
        # The highlight comes from the stylesheet (no inline style under the CSP).
        background = failing.locator("td").first.evaluate("cell => getComputedStyle(cell).backgroundColor")
        assert background == "rgb(253, 236, 234)", background

        page.screenshot(path=str(tmp_path / "timeline.png"), full_page=True)
        page.goto(f"{live_server.base_url}/admin/sessions?trace_id={failing_trace}")
        (link,) = page.get_by_test_id("session-link").all()
        assert link.inner_text() == session_id
        page.goto(f"{live_server.base_url}/admin/sessions")  # no filter: the last day's sessions
        assert page.get_by_test_id("session-link").filter(has_text=session_id).count() == 1
        assert "the last 24 hours" in page.locator("#sessions-h").inner_text()
        assert console_errors == []
    finally:
        page.screenshot(path=str(tmp_path / "session.png"), full_page=True)
        context.close()
