"""The seller area (`/seller/...`) and the admin's deliveries page over HTTP on both engines, on a server that
sends webhooks to 127.0.0.1 and retries after a second (a failing endpoint makes a `failed` delivery within
seconds): sign-in through the shared form, the dashboard's figures equal to the API's, each seller's own
deliveries only, Retry buttons (CSRF, another seller's delivery a 404, the admin's audited)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest

from market.adapters.http.dashboard import SELLER_COOKIE
from tests.support.live_server import LiveServer, auth, register, serving
from tests.support.servers.webhook_receiver import WebhookReceiver, running_receiver

from .helpers import create_admin, create_item
from .pages import (
    LOGIN,
    admin_session,
    assert_html_page,
    cookie_of_token,
    csrf_of,
    page_error,
    page_notice,
    rows,
    seller_session,
    texts_of,
)

SELLER_DELIVERIES = "/api/v1/seller/webhook/deliveries"
DEV_SETTINGS = {"MARKET_WEBHOOKS_ALLOW_PRIVATE": "1", "MARKET_WEBHOOK_RETRY_SCHEDULE": "1s"}
SELLER_PAGES = ["/seller/dashboard", "/seller/deliveries"]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def dev_server(request, tmp_path_factory) -> Iterator[LiveServer]:
    with serving(
        request.param, tmp_path_factory.mktemp(f"seller-pages-{request.param}"), DEV_SETTINGS
    ) as server:
        yield server


@pytest.fixture
def client(dev_server):
    with dev_server.client() as c:
        yield c


@pytest.fixture(scope="module")
def admin(dev_server):
    with dev_server.client() as c:
        return create_admin(dev_server, c)


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with running_receiver(status=500) as r:
        yield r


def _sell(client, seller, receiver=None, quantity=1):
    """One paid order of `quantity` units of a new item of `seller` (whose endpoint is `receiver`, if any)."""
    item = create_item(
        client, seller, stock=10, price_cents=1500, title=f"Vase <i>{uuid.uuid4().hex[:6]}</i>"
    )
    if receiver is not None:
        r = client.put("/api/v1/seller/webhook", json={"url": receiver.url}, headers=auth(seller))
        assert r.status_code == 200, r.text
    buyer = register(client)
    client.put(f"/api/v1/cart/items/{item['id']}", json={"quantity": quantity}, headers=auth(buyer))
    r = client.post(
        "/api/v1/checkout",
        json={"payment_method": {"type": "card", "token": "tok_visa"}},
        headers={**auth(buyer), "Idempotency-Key": uuid.uuid4().hex},
    )
    assert r.status_code == 201, r.text
    return r.json()


def _wait(client, seller, done, timeout=30.0):
    deadline = time.monotonic() + timeout
    while True:
        items = client.get(SELLER_DELIVERIES, headers=auth(seller)).json()["items"]
        if items and done(items[0]):
            return items[0]
        assert time.monotonic() < deadline, items
        time.sleep(0.2)


def _failed_delivery(client, receiver):
    seller = register(client, "seller")
    _sell(client, seller, receiver)
    return seller, _wait(client, seller, lambda d: d["status"] == "failed")


# --- who may -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", SELLER_PAGES)
def test_the_seller_pages_are_for_the_signed_in_seller_only(client, admin, path):
    buyer, seller = register(client), register(client, "seller")
    anonymous = client.get(path, headers={"Accept": "text/html"})
    assert anonymous.status_code == 303 and anonymous.headers["location"] == LOGIN
    for someone in (buyer, admin):  # their own tokens planted as the seller cookie
        text = assert_html_page(
            client.get(path, headers=cookie_of_token(someone["Authorization"], SELLER_COOKIE)), 403
        )
        assert "for sellers only" in text
    dead = client.get(path, headers=cookie_of_token("Bearer garbage", SELLER_COOKIE))
    assert dead.status_code == 303 and dead.headers["location"] == LOGIN
    assert (
        dead.headers["set-cookie"].startswith(f"{SELLER_COOKIE}=;")
        and "Path=/seller" in dead.headers["set-cookie"]
    )
    assert_html_page(client.get(path, headers=seller_session(client, seller)), 200)
    assert (
        client.get("/seller", headers=seller_session(client, seller)).headers["location"]
        == "/seller/dashboard"
    )


def test_a_seller_signs_out_and_the_cookie_no_longer_opens_anything(client):
    seller = register(client, "seller")
    session = seller_session(client, seller)
    r = client.post("/seller/logout", data={"csrf_token": csrf_of(session)}, headers=session)
    assert r.status_code == 303 and r.headers["location"] == LOGIN
    assert r.headers["set-cookie"].startswith(f"{SELLER_COOKIE}=;")
    assert client.get("/seller/dashboard", headers=session).headers["location"] == LOGIN
    assert client.get("/api/v1/me", headers=auth(seller)).status_code == 401


def test_signing_out_of_the_seller_area_needs_the_sessions_csrf_token(client):
    seller = register(client, "seller")
    session = seller_session(client, seller)
    other = seller_session(client, register(client, "seller"))
    for token in (None, "", "0" * 64, csrf_of(other)):
        data = {} if token is None else {"csrf_token": token}
        refused = assert_html_page(client.post("/seller/logout", data=data, headers=session), 403)
        assert "nothing was done" in refused
        assert client.get("/api/v1/me", headers=auth(seller)).status_code == 200
    # The refused page's button signs out of the seller area with the session's token.
    assert (
        f'action="/seller/logout"><input type="hidden" name="csrf_token" value="{csrf_of(session)}"'
        in refused
    )
    # A non-seller's refusal page too (a buyer's token planted as the seller cookie).
    planted = cookie_of_token(register(client)["Authorization"], SELLER_COOKIE)
    not_allowed = assert_html_page(client.get("/seller/dashboard", headers=planted), 403)
    assert f'name="csrf_token" value="{csrf_of(planted)}"' in not_allowed


# --- the dashboard -----------------------------------------------------------------------------------------


def test_the_seller_dashboard_page_shows_the_apis_figures(client):
    seller = register(client, "seller")
    other = register(client, "seller")
    _sell(client, seller, quantity=2)
    _sell(client, seller, quantity=1)
    _sell(client, other, quantity=5)  # someone else's sale is not on the page

    api = client.get("/api/v1/seller/dashboard", headers=auth(seller)).json()
    text = assert_html_page(client.get("/seller/dashboard", headers=seller_session(client, seller)), 200)

    assert api["orders"] == 2 and api["units"] == 3
    assert texts_of(text, "seller-orders") == ["2"]
    assert texts_of(text, "seller-units") == ["3"]
    assert texts_of(text, "seller-conversion") == [f"{api['conversion'] * 100:.1f} %"]
    assert texts_of(text, "revenue-EUR-cents") == ["4\u202f500"]
    assert texts_of(text, "refunded-EUR-cents") == ["0"] and texts_of(text, "seller-refunds") == ["0"]
    assert [r["revenue_cents"] for r in api["revenue"]] == [4500]
    assert "Vase &lt;i&gt;" in text and "<i>" not in text  # item titles are escaped


@pytest.mark.parametrize(
    "query", [{"from": "yesterday"}, {"from": "2026-02-01", "to": "2026-01-01"}, {"to": "x" * 5000}]
)
def test_a_bad_period_on_the_seller_dashboard_is_a_400_page(client, query):
    session = seller_session(client, register(client, "seller"))
    text = assert_html_page(client.get("/seller/dashboard", params=query, headers=session), 400)
    assert 'data-testid="period-error"' in text and 'data-testid="seller-orders"' not in text


# --- deliveries --------------------------------------------------------------------------------------------


def test_a_seller_sees_and_retries_their_own_deliveries_only(client, admin, receiver):
    seller, delivery = _failed_delivery(client, receiver)
    other = register(client, "seller")
    mine, theirs = seller_session(client, seller), seller_session(client, other)

    text = assert_html_page(client.get("/seller/deliveries", headers=mine), 200)
    assert rows(text, "delivery-row", "data-delivery-id") == [delivery["id"]]
    assert texts_of(text, "delivery-status") == ["failed"]
    assert 'data-testid="retry-delivery"' in text
    assert (
        rows(
            assert_html_page(client.get("/seller/deliveries", headers=theirs), 200),
            "delivery-row",
            "data-delivery-id",
        )
        == []
    )

    url = f"/seller/deliveries/{delivery['id']}/retry"
    for token in (None, "0" * 64, csrf_of(theirs)):
        data = {} if token is None else {"csrf_token": token}
        assert "nothing was done" in assert_html_page(client.post(url, data=data, headers=mine), 403)
    assert page_error(
        assert_html_page(client.post(url, data={"csrf_token": csrf_of(theirs)}, headers=theirs), 404)
    )
    buyer_cookie = cookie_of_token(register(client)["Authorization"], SELLER_COOKIE)
    assert_html_page(client.post(url, data={"csrf_token": csrf_of(buyer_cookie)}, headers=buyer_cookie), 403)
    assert client.get(SELLER_DELIVERIES, headers=auth(seller)).json()["items"][0]["status"] == "failed"

    receiver.default_status = 200
    text = assert_html_page(client.post(url, data={"csrf_token": csrf_of(mine)}, headers=mine), 200)
    assert page_notice(text).startswith(f"Delivery {delivery['id']} is queued again")
    _wait(client, seller, lambda d: d["status"] == "delivered")
    again = client.post(url, data={"csrf_token": csrf_of(mine)}, headers=mine)
    assert "only pending or failed deliveries can be retried" in page_error(assert_html_page(again, 409))
    trail = client.get(
        "/api/v1/admin/audit", params={"target_id": delivery["id"]}, headers=auth(admin)
    ).json()
    assert trail["items"] == []  # a seller's own retry is not an admin write


def test_an_admin_lists_deliveries_by_seller_and_status_and_retries_one(client, admin, receiver):
    seller, delivery = _failed_delivery(client, receiver)
    session = admin_session(client, admin)

    listed = client.get(
        "/admin/deliveries", params={"seller_id": seller["id"], "status": "failed"}, headers=session
    )
    text = assert_html_page(listed, 200)
    assert rows(text, "delivery-row", "data-delivery-id") == [delivery["id"]]
    assert seller["id"] in text
    delivered = client.get(
        "/admin/deliveries", params={"seller_id": seller["id"], "status": "delivered"}, headers=session
    )
    assert rows(assert_html_page(delivered, 200), "delivery-row", "data-delivery-id") == []
    for params, field in (({"seller_id": "x"}, "seller_id"), ({"status": "lost"}, "status")):
        bad = assert_html_page(client.get("/admin/deliveries", params=params, headers=session), 400)
        assert f"<strong>{field}</strong>" in bad

    receiver.default_status = 200
    r = client.post(
        f"/admin/deliveries/{delivery['id']}/retry",
        data={"csrf_token": csrf_of(session), "seller_id": seller["id"], "status": "failed"},
        headers=session,
    )
    text = assert_html_page(r, 200)
    assert page_notice(text).startswith(f"Delivery {delivery['id']} is queued again")
    assert rows(text, "delivery-row", "data-delivery-id") == []  # the failed list it was posted from
    _wait(client, seller, lambda d: d["status"] == "delivered")
    trail = client.get(
        "/api/v1/admin/audit", params={"target_id": delivery["id"]}, headers=auth(admin)
    ).json()
    assert [(e["action"], e["actor_id"]) for e in trail["items"]] == [("webhook.retried", admin["id"])]
    missing = client.post(
        f"/admin/deliveries/{uuid.uuid4()}/retry", data={"csrf_token": csrf_of(session)}, headers=session
    )
    assert page_error(assert_html_page(missing, 404)) == "There is no such delivery."
