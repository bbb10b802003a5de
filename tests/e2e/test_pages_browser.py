"""The seller area and the admin tool pages in a real browser (Debian's Chromium, headless, driven by
Playwright; see test_dashboard_browser.py): a seller whose webhook endpoint fails signs in on the shared form,
reads their dashboard and finds the failed delivery; an admin signs in, finds it on the deliveries page and
presses Retry; the seller reloads and sees it delivered. Nothing is loaded from elsewhere and the
Content-Security-Policy refuses nothing. (Refunds from the order page are not here: they had not landed.)"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from market.adapters.http.dashboard import COOKIE, SELLER_COOKIE
from tests.support.live_server import LiveServer, auth, register, serving
from tests.support.servers.webhook_receiver import running_receiver

from .helpers import CHROMIUM, CHROMIUM_ARGS, create_admin, create_item

DEV_SETTINGS = {"MARKET_WEBHOOKS_ALLOW_PRIVATE": "1", "MARKET_WEBHOOK_RETRY_SCHEDULE": "1s"}
PRICE, QUANTITY = 1000, 3


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def dev_server(request, tmp_path_factory) -> Iterator[LiveServer]:
    with serving(
        request.param, tmp_path_factory.mktemp(f"pages-browser-{request.param}"), DEV_SETTINGS
    ) as server:
        yield server


@pytest.fixture
def browser(dev_server: LiveServer) -> Iterator[Browser]:
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(reason + "; .ci/run should have installed it")
        pytest.skip(reason)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def _sign_in(page: Page, base_url: str, email: str, password: str, lands_on: str) -> None:
    page.goto(f"{base_url}{lands_on}")
    assert page.url == f"{base_url}/admin/login"  # no session yet
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"**{lands_on}")


def test_a_seller_finds_a_failed_delivery_and_an_admin_retries_it_from_the_page(
    dev_server: LiveServer, browser: Browser, tmp_path: Path
):
    base = dev_server.base_url
    elsewhere: list[str] = []
    console_errors: list[str] = []
    with dev_server.client() as client, running_receiver(status=500) as receiver:
        admin = create_admin(dev_server, client)
        seller, buyer = register(client, "seller"), register(client)
        item = create_item(
            client, seller, price_cents=PRICE, stock=10, title=f"Teapot {uuid.uuid4().hex[:6]}"
        )
        assert (
            client.put("/api/v1/seller/webhook", json={"url": receiver.url}, headers=auth(seller)).status_code
            == 200
        )
        client.put(f"/api/v1/cart/items/{item['id']}", json={"quantity": QUANTITY}, headers=auth(buyer))
        r = client.post(
            "/api/v1/checkout",
            json={"payment_method": {"type": "card", "token": "tok_visa"}},
            headers={**auth(buyer), "Idempotency-Key": uuid.uuid4().hex},
        )
        assert r.status_code == 201, r.text
        deadline = time.monotonic() + 30
        while [
            d["status"]
            for d in client.get("/api/v1/seller/webhook/deliveries", headers=auth(seller)).json()["items"]
        ] != ["failed"]:
            assert time.monotonic() < deadline
            time.sleep(0.2)

        seller_context = browser.new_context(viewport={"width": 1366, "height": 768})
        admin_context = browser.new_context(viewport={"width": 1366, "height": 768})
        seller_page, admin_page = seller_context.new_page(), admin_context.new_page()
        for page in (seller_page, admin_page):
            page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
            page.on("request", lambda r: None if r.url.startswith(base) else elsewhere.append(r.url))
        try:
            _sign_in(seller_page, base, seller["email"], seller["password"], "/seller/dashboard")
            (cookie,) = [c for c in seller_context.cookies() if c["name"] == SELLER_COOKIE]
            assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict"
            assert cookie["path"] == "/seller"
            revenue = seller_page.get_by_test_id("revenue-EUR-cents").inner_text().replace("\u202f", "")
            assert int(revenue) == PRICE * QUANTITY
            seller_page.get_by_role("link", name="Webhook deliveries").click()
            assert seller_page.get_by_test_id("delivery-status").inner_text() == "failed"

            _sign_in(admin_page, base, admin["email"], admin["password"], "/admin/dashboard")
            assert [c["path"] for c in admin_context.cookies() if c["name"] == COOKIE] == ["/admin"]
            admin_page.get_by_role("link", name="Deliveries").click()
            admin_page.get_by_label("Seller id").fill(seller["id"])
            admin_page.get_by_label("Status").select_option("failed")
            admin_page.get_by_role("button", name="Find").click()
            receiver.default_status = 200
            with admin_page.expect_response(lambda r: r.url.endswith("/retry")) as sent:
                admin_page.get_by_test_id("retry-delivery").click()
            assert sent.value.status == 200
            assert "is queued again" in admin_page.get_by_test_id("page-notice").inner_text()

            deadline = time.monotonic() + 30
            while True:
                seller_page.reload()
                if seller_page.get_by_test_id("delivery-status").inner_text() == "delivered":
                    break
                assert time.monotonic() < deadline
                time.sleep(0.3)
            assert len({got.headers["webhook-id"] for got in receiver.received()}) == 1  # the same delivery
            assert elsewhere == []
            assert console_errors == []
            background = seller_page.evaluate("getComputedStyle(document.body).backgroundColor")
            assert background == "rgb(238, 241, 245)", background  # the stylesheet applies on /seller too
        finally:
            seller_page.screenshot(path=str(tmp_path / "seller.png"), full_page=True)
            admin_page.screenshot(path=str(tmp_path / "admin.png"), full_page=True)
            seller_context.close()
            admin_context.close()
