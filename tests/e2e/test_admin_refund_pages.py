"""The refund form of an order's admin page over HTTP on both engines: admins only, CSRF, a fresh idempotency
key per render (a double submit is one refund), partial then full refunds, and the API's refusals (409) shown."""

from __future__ import annotations

import re
import uuid

import pytest

from tests.support.live_server import auth, register

from .helpers import create_admin, create_item
from .pages import (
    LOGIN,
    admin_session,
    assert_html_page,
    cookie_of_token,
    csrf_of,
    page_error,
    page_notice,
    texts_of,
)


@pytest.fixture(scope="module")
def admin(live_server):
    with live_server.client() as client:
        return create_admin(live_server, client)


@pytest.fixture(scope="module")
def session(live_server, admin):
    with live_server.client() as client:
        return admin_session(client, admin)


def _paid_order(client, token="tok_visa"):
    seller, buyer = register(client, "seller"), register(client)
    item = create_item(client, seller, stock=10, price_cents=1000)
    client.put(f"/api/v1/cart/items/{item['id']}", json={"quantity": 2}, headers=auth(buyer))
    r = client.post(
        "/api/v1/checkout",
        json={"payment_method": {"type": "card", "token": token}},
        headers={**auth(buyer), "Idempotency-Key": uuid.uuid4().hex},
    )
    assert r.status_code in (201, 402), r.text
    return client.get("/api/v1/orders", params={"limit": 1}, headers=auth(buyer)).json()["items"][0]


def _form(text: str) -> dict[str, str]:
    """The hidden fields of the page's refund form."""
    form = re.search(r'<form class="refund".*?</form>', text, re.S)
    assert form, text
    return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', form.group(0)))


def _status(client, admin, order_id):
    return client.get(f"/api/v1/orders/{order_id}", headers=auth(admin)).json()["status"]


def test_each_render_of_the_order_page_has_a_fresh_idempotency_key(client, session):
    order = _paid_order(client)
    first = _form(assert_html_page(client.get(f"/admin/orders/{order['id']}", headers=session), 200))
    second = _form(assert_html_page(client.get(f"/admin/orders/{order['id']}", headers=session), 200))
    assert first["csrf_token"] == csrf_of(session)
    assert len(first["idempotency_key"]) == 32 and first["idempotency_key"] != second["idempotency_key"]


def test_an_admin_refunds_part_then_the_rest_and_a_double_submit_is_one_refund(client, admin, session):
    order = _paid_order(client)
    url = f"/admin/orders/{order['id']}/refunds"
    fields = {**_form(client.get(f"/admin/orders/{order['id']}", headers=session).text), "reason": "damaged"}

    first = assert_html_page(client.post(url, data={**fields, "amount_cents": "500"}, headers=session), 200)
    again = assert_html_page(client.post(url, data={**fields, "amount_cents": "500"}, headers=session), 200)

    assert re.match(r"Refund \S+: 500 EUR minor units, succeeded\.$", page_notice(first))
    assert page_notice(again).startswith(page_notice(first)[:-1])  # the same refund, replayed
    assert "sent before" in page_notice(again)
    assert texts_of(first, "order-status") == ["partially_refunded"]
    assert _status(client, admin, order["id"]) == "partially_refunded"
    trail = client.get("/api/v1/admin/audit", params={"target_id": order["id"]}, headers=auth(admin)).json()
    assert [e["details"]["amount_cents"] for e in trail["items"]] == [500]

    rest = {**_form(first), "reason": "other", "amount_cents": ""}  # the page shown after: a new key
    assert rest["idempotency_key"] != fields["idempotency_key"]
    text = assert_html_page(client.post(url, data=rest, headers=session), 200)
    assert "1500 EUR minor units, succeeded" in page_notice(text)
    assert texts_of(text, "order-status") == ["refunded"]
    assert 'data-testid="not-refundable"' in text
    more = {
        "csrf_token": csrf_of(session),
        "idempotency_key": uuid.uuid4().hex,
        "reason": "other",
        "amount_cents": "1",
    }
    assert "refunded in full" in page_error(
        assert_html_page(client.post(url, data=more, headers=session), 409)
    )


def test_a_refund_over_what_is_left_or_of_an_unpaid_order_shows_the_409(client, admin, session):
    order = _paid_order(client)
    fields = {
        **_form(client.get(f"/admin/orders/{order['id']}", headers=session).text),
        "reason": "duplicate",
    }
    r = client.post(
        f"/admin/orders/{order['id']}/refunds", data={**fields, "amount_cents": "2001"}, headers=session
    )
    assert "2001 were asked" in page_error(assert_html_page(r, 409))
    assert _status(client, admin, order["id"]) == "paid"

    declined = _paid_order(client, "tok_chargeDeclined")
    page = assert_html_page(client.get(f"/admin/orders/{declined['id']}", headers=session), 200)
    assert 'data-testid="not-refundable"' in page and 'class="refund"' not in page
    r = client.post(
        f"/admin/orders/{declined['id']}/refunds",
        data={**fields, "idempotency_key": uuid.uuid4().hex},
        headers=session,
    )
    assert "only a paid order can be refunded" in page_error(assert_html_page(r, 409))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"amount_cents": "-5"}, "The amount is a whole number"),
        ({"amount_cents": "12.50"}, "The amount is a whole number"),
        ({"amount_cents": "9" * 40}, "The amount is a whole number"),
        ({"reason": "<b>because</b>"}, "Pick a reason"),
        ({"reason": "provider"}, "Pick a reason"),  # the provider's own, never an admin's
        ({"idempotency_key": ""}, "The form's idempotency key is missing"),
        ({"idempotency_key": "key\x00with nul"}, "The form's idempotency key is missing"),
        ({"idempotency_key": "k" * 256}, "The form's idempotency key is missing"),
    ],
)
def test_a_bad_refund_form_is_a_400_and_refunds_nothing(client, admin, session, changes, message):
    order = _paid_order(client)
    fields = {**_form(client.get(f"/admin/orders/{order['id']}", headers=session).text), "reason": "other"}
    r = client.post(f"/admin/orders/{order['id']}/refunds", data={**fields, **changes}, headers=session)
    text = assert_html_page(r, 400)
    assert page_error(text).startswith(message) and "<b>because" not in text
    assert _status(client, admin, order["id"]) == "paid"


def test_the_refund_form_is_for_admins_only_and_needs_its_csrf_token(client, admin, session):
    order = _paid_order(client)
    url = f"/admin/orders/{order['id']}/refunds"
    fields = {"idempotency_key": uuid.uuid4().hex, "reason": "other"}
    anonymous = client.post(url, data=fields)
    assert anonymous.status_code == 303 and anonymous.headers["location"] == LOGIN
    for role in ("buyer", "seller"):
        planted = cookie_of_token(register(client, role)["Authorization"])
        assert_html_page(
            client.post(url, data={**fields, "csrf_token": csrf_of(planted)}, headers=planted), 403
        )
    for token in (None, "0" * 64):
        data = fields if token is None else {**fields, "csrf_token": token}
        assert "nothing was done" in assert_html_page(client.post(url, data=data, headers=session), 403)
    assert _status(client, admin, order["id"]) == "paid"
