"""The admin tool pages and the seller area in a real browser (Debian's Chromium, headless, driven by
Playwright; see test_dashboard_browser.py): a seller signs in on the shared form and reads their net revenue; an
admin signs in, finds the order on the orders page, refunds part of it with the order page's form; the seller
reloads their dashboard and sees the net revenue drop by the refund. Nothing is loaded from elsewhere and the
Content-Security-Policy refuses nothing."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from market.adapters.http.dashboard import COOKIE, SELLER_COOKIE
from tests.support.live_server import LiveServer, auth, register

from .helpers import CHROMIUM, CHROMIUM_ARGS, create_admin, create_item

PRICE = 1000
QUANTITY = 3
REFUND = 700


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


def _paid_order(client: httpx.Client) -> tuple[dict[str, str], dict]:
    seller, buyer = register(client, "seller"), register(client)
    item = create_item(client, seller, price_cents=PRICE, stock=10, title=f"Teapot {uuid.uuid4().hex[:6]}")
    client.put(f"/api/v1/cart/items/{item['id']}", json={"quantity": QUANTITY}, headers=auth(buyer))
    r = client.post(
        "/api/v1/checkout",
        json={"payment_method": {"type": "card", "token": "tok_visa"}},
        headers={**auth(buyer), "Idempotency-Key": uuid.uuid4().hex},
    )
    assert r.status_code == 201, r.text
    return seller, r.json()


def _sign_in(page: Page, base_url: str, email: str, password: str, lands_on: str) -> None:
    page.goto(f"{base_url}{lands_on}")
    assert page.url == f"{base_url}/admin/login"  # no session yet
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"**{lands_on}")


def _watch(page: Page, base_url: str, elsewhere: list[str], console_errors: list[str]) -> None:
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    page.on("request", lambda r: None if r.url.startswith(base_url) else elsewhere.append(r.url))


def _net_revenue(page: Page) -> int:
    return int(page.get_by_test_id("net-revenue-EUR-cents").inner_text().replace("\u202f", ""))


def test_an_admin_refunds_from_the_order_page_and_the_seller_sees_net_revenue_drop(
    live_server: LiveServer, client: httpx.Client, browser: Browser, tmp_path: Path
):
    admin = create_admin(live_server, client)
    seller, order = _paid_order(client)
    base = live_server.base_url
    elsewhere: list[str] = []
    console_errors: list[str] = []

    seller_context = browser.new_context(viewport={"width": 1366, "height": 768})
    admin_context = browser.new_context(viewport={"width": 1366, "height": 768})
    seller_page, admin_page = seller_context.new_page(), admin_context.new_page()
    for page in (seller_page, admin_page):
        _watch(page, base, elsewhere, console_errors)
    try:
        _sign_in(seller_page, base, seller["email"], seller["password"], "/seller/dashboard")
        (cookie,) = [c for c in seller_context.cookies() if c["name"] == SELLER_COOKIE]
        assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict"
        assert cookie["path"] == "/seller"
        assert _net_revenue(seller_page) == PRICE * QUANTITY

        _sign_in(admin_page, base, admin["email"], admin["password"], "/admin/dashboard")
        assert [c["path"] for c in admin_context.cookies() if c["name"] == COOKIE] == ["/admin"]
        admin_page.get_by_role("link", name="Orders").click()
        admin_page.get_by_label("Seller id").fill(seller["id"])
        admin_page.get_by_role("button", name="Find").click()
        admin_page.get_by_test_id("order-link").click()
        admin_page.wait_for_url(f"**/admin/orders/{order['id']}")
        assert admin_page.get_by_test_id("order-status").inner_text() == "paid"
        admin_page.get_by_label("Amount").fill(str(REFUND))
        admin_page.get_by_label("Reason").select_option("damaged")
        with admin_page.expect_response(lambda r: r.url.endswith("/refunds")) as sent:
            admin_page.get_by_test_id("refund-order").click()
        assert sent.value.status == 200
        notice = admin_page.get_by_test_id("page-notice").inner_text()
        assert f"{REFUND} EUR minor units, succeeded" in notice
        assert admin_page.get_by_test_id("order-status").inner_text() == "partially_refunded"

        seller_page.reload()
        assert _net_revenue(seller_page) == PRICE * QUANTITY - REFUND
        api = client.get("/api/v1/seller/dashboard", headers=auth(seller)).json()
        assert api["orders"] == 1

        assert elsewhere == []
        assert console_errors == []
        background = seller_page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert background == "rgb(238, 241, 245)", background  # the stylesheet applies on /seller too
    finally:
        seller_page.screenshot(path=str(tmp_path / "seller.png"), full_page=True)
        admin_page.screenshot(path=str(tmp_path / "admin.png"), full_page=True)
        seller_context.close()
        admin_context.close()
