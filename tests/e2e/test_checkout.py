"""Cart, checkout, orders and provider webhooks over HTTP, on both engines: the buyer's whole journey with
every sandbox test card, idempotency, who sees which order, and what a provider event may change.

The module runs its own `live_server` per engine (started with start_server): provider events must be signed
with a MARKET_PAYMENT_WEBHOOK_SECRET we know, and the background reconciler must run every second. The
sandbox's own webhooks reach the server through the default MARKET_PUBLIC_URL, http://127.0.0.1:<MARKET_PORT>."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from market.adapters.payments.signature import sign
from tests.support.live_server import LiveServer, auth, register, serving, start_server, stop_server

from .helpers import (
    RFC3339_UTC,
    assert_problem,
    create_admin,
    create_item,
    problem_type,
    run_market,
    unique_word,
)

CART = "/api/v1/cart"
CHECKOUT = "/api/v1/checkout"
ORDERS = "/api/v1/orders"
PROVIDER_WEBHOOK = "/api/v1/webhooks/payments"
WEBHOOK_SECRET = "whsec_e2e_" + uuid.uuid4().hex
ORDER_FIELDS = {
    "id",
    "buyer_id",
    "status",
    "lines",
    "total_cents",
    "currency",
    "payment",
    "created_at",
    "updated_at",
}


# --- helpers ----------------------------------------------------------------------------------------------


def put_cart(client: httpx.Client, buyer: dict[str, str], item_id: str, quantity: int) -> httpx.Response:
    return client.put(f"{CART}/items/{item_id}", json={"quantity": quantity}, headers=auth(buyer))


def card(token: str) -> dict[str, Any]:
    return {"payment_method": {"type": "card", "token": token}}


def checkout(
    client: httpx.Client, buyer: dict[str, str], token: str = "tok_visa", key: str | None = None
) -> httpx.Response:
    headers = {**auth(buyer), "Idempotency-Key": key or uuid.uuid4().hex}
    return client.post(CHECKOUT, json=card(token), headers=headers)


def order_of(client: httpx.Client, account: dict[str, str], order_id: str) -> dict[str, Any]:
    r = client.get(f"{ORDERS}/{order_id}", headers=auth(account))
    assert r.status_code == 200, r.text
    return r.json()


def wait_for_status(
    client: httpx.Client, account: dict[str, str], order_id: str, status: str, within_s: float = 20
) -> dict[str, Any]:
    """Poll until the order reaches `status` (asynchronous outcomes); fail with the last state seen."""
    deadline = time.monotonic() + within_s
    while True:
        order = order_of(client, account, order_id)
        if order["status"] == status or time.monotonic() > deadline:
            assert order["status"] == status, order
            return order
        time.sleep(0.2)


def stock_of(client: httpx.Client, item_id: str) -> int:
    return client.get(f"/api/v1/items/{item_id}").json()["stock"]


def cart_quantities(client: httpx.Client, buyer: dict[str, str]) -> dict[str, int]:
    r = client.get(CART, headers=auth(buyer))
    assert r.status_code == 200, r.text
    return {line["item_id"]: line["quantity"] for line in r.json()["lines"]}


def visible_order_ids(client: httpx.Client, account: dict[str, str]) -> list[str]:
    ids, cursor = [], None
    while True:
        params = {"limit": 100, **({"cursor": cursor} if cursor else {})}
        r = client.get(ORDERS, params=params, headers=auth(account))
        assert r.status_code == 200, r.text
        ids += [o["id"] for o in r.json()["items"]]
        cursor = r.json()["next_cursor"]
        if cursor is None:
            return ids


def run_reconcile(server: LiveServer) -> str:
    return run_market(server, "payments", "reconcile")


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def live_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """This module's own server per engine (conftest's `client` uses it): a known
    MARKET_PAYMENT_WEBHOOK_SECRET, to sign provider events, and a background reconciler that stays out of the
    way (the test of the background reconciler starts a second server with its own)."""
    env = {"MARKET_PAYMENT_WEBHOOK_SECRET": WEBHOOK_SECRET, "MARKET_RECONCILE_INTERVAL": "3600"}
    with serving(request.param, tmp_path_factory.mktemp(f"checkout-{request.param}"), env) as server:
        yield server


@pytest.fixture(scope="module")
def seller(live_server):
    """One seller per server for the module: an account costs two password hashes."""
    with live_server.client() as c:
        return register(c, role="seller")


@pytest.fixture
def buyer(client):
    return register(client, role="buyer")


@pytest.fixture
def item(client, seller):
    return create_item(client, seller, title=f"{unique_word()} mug", price_cents=1999, stock=5)


@pytest.fixture
def carted(client, buyer, item):
    """The buyer has two of the item in the cart."""
    assert put_cart(client, buyer, item["id"], 2).status_code == 200
    return item


# --- the journey ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("token", ["tok_visa", "tok_mastercard"])
def test_a_buyer_finds_an_item_fills_the_cart_and_pays(client, seller, buyer, token):
    word = unique_word()
    item = create_item(client, seller, title=f"Stoneware {word} mug", price_cents=1999, stock=5)
    found = client.get("/api/v1/items", params={"q": word}).json()["items"]
    assert [i["id"] for i in found] == [item["id"]]

    r = put_cart(client, buyer, item["id"], 2)
    assert r.status_code == 200, r.text
    assert r.json() == {
        "lines": [
            {
                "item_id": item["id"],
                "title": item["title"],
                "quantity": 2,
                "unit_price_cents": 1999,
                "line_total_cents": 3998,
            }
        ],
        "total_cents": 3998,
        "currency": "EUR",
    }

    r = checkout(client, buyer, token)
    assert r.status_code == 201, r.text
    assert "idempotent-replayed" not in r.headers
    order = r.json()
    assert set(order) == ORDER_FIELDS
    assert order["status"] == "paid" and order["buyer_id"] == buyer["id"]
    assert order["lines"] == [
        {
            "item_id": item["id"],
            "title": item["title"],
            "quantity": 2,
            "unit_price_cents": 1999,
            "line_total_cents": 3998,
        }
    ]
    assert (order["total_cents"], order["currency"]) == (3998, "EUR")
    payment = order["payment"]
    assert set(payment) == {"id", "status", "method", "amount_cents"}
    assert (payment["status"], payment["method"], payment["amount_cents"]) == ("succeeded", "card", 3998)
    assert RFC3339_UTC.match(order["created_at"]) and RFC3339_UTC.match(order["updated_at"])

    assert client.get(CART, headers=auth(buyer)).json() == {"lines": [], "total_cents": 0, "currency": None}
    assert stock_of(client, item["id"]) == 3
    assert order_of(client, buyer, order["id"]) == order
    assert visible_order_ids(client, buyer) == [order["id"]]


@pytest.mark.parametrize(
    ("token", "reason"), [("tok_chargeDeclined", "declined"), ("tok_insufficientFunds", "insufficient funds")]
)
def test_a_declined_card_is_a_402_the_order_failed_the_stock_back_and_the_cart_kept(
    client, buyer, carted, token, reason
):
    r = checkout(client, buyer, token)
    problem = assert_problem(r, 402, type_uri=problem_type("payment-declined"))
    assert reason in problem["detail"]
    order = order_of(client, buyer, problem["order_id"])
    assert order["status"] == "payment_failed" and order["payment"]["status"] == "declined"
    assert stock_of(client, carted["id"]) == 5
    assert cart_quantities(client, buyer) == {carted["id"]: 2}

    retry = checkout(client, buyer, "tok_visa")
    assert retry.status_code == 201, retry.text
    assert retry.json()["status"] == "paid" and retry.json()["id"] != problem["order_id"]
    assert stock_of(client, carted["id"]) == 3


def test_an_asynchronous_payment_is_processing_then_paid_by_the_providers_signed_webhook(
    client, buyer, carted
):
    r = checkout(client, buyer, "tok_processing")
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "processing" and r.json()["payment"]["status"] == "processing"
    assert stock_of(client, carted["id"]) == 3, "stock stays reserved while processing"
    # Within 8 s it can only be the webhook: the background reconciler leaves orders alone for 10 s.
    paid = wait_for_status(client, buyer, r.json()["id"], "paid", within_s=8)
    assert paid["payment"]["status"] == "succeeded"
    assert stock_of(client, carted["id"]) == 3
    assert cart_quantities(client, buyer) == {}


# --- idempotency ------------------------------------------------------------------------------------------


def test_checkout_without_an_idempotency_key_or_with_one_too_long_is_a_400_and_changes_nothing(
    client, buyer, carted
):
    r = client.post(CHECKOUT, json=card("tok_visa"), headers=auth(buyer))
    assert_problem(r, 400, type_uri=problem_type("idempotency-key-required"), fields={"Idempotency-Key"})
    # An empty key is no key: the same problem, not a generic invalid parameter.
    r = client.post(CHECKOUT, json=card("tok_visa"), headers={**auth(buyer), "Idempotency-Key": ""})
    assert_problem(r, 400, type_uri=problem_type("idempotency-key-required"), fields={"Idempotency-Key"})
    assert_problem(checkout(client, buyer, key="k" * 256), 400, fields={"Idempotency-Key"})
    assert stock_of(client, carted["id"]) == 5
    assert visible_order_ids(client, buyer) == []
    assert cart_quantities(client, buyer) == {carted["id"]: 2}


def test_a_retry_with_the_same_key_replays_the_first_response_and_another_body_is_a_422(
    client, buyer, carted
):
    key = uuid.uuid4().hex
    first = checkout(client, buyer, key=key)
    assert first.status_code == 201, first.text
    again = checkout(client, buyer, key=key)
    assert again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.content == first.content
    assert again.headers["content-type"].startswith("application/json")
    other_body = checkout(client, buyer, "tok_mastercard", key=key)
    assert_problem(
        other_body, 422, type_uri=problem_type("idempotency-key-reused"), fields={"Idempotency-Key"}
    )
    assert "idempotent-replayed" not in other_body.headers
    assert visible_order_ids(client, buyer) == [first.json()["id"]]
    assert stock_of(client, carted["id"]) == 3


def test_a_declined_checkout_is_replayed_as_the_same_problem(client, buyer, carted):
    key = uuid.uuid4().hex
    first = checkout(client, buyer, "tok_chargeDeclined", key=key)
    assert first.status_code == 402
    again = checkout(client, buyer, "tok_chargeDeclined", key=key)
    assert again.status_code == 402 and again.content == first.content
    assert again.headers["idempotent-replayed"] == "true"
    assert again.headers["content-type"].startswith("application/problem+json")
    assert len(visible_order_ids(client, buyer)) == 1


def test_another_buyers_key_never_replays_someone_elses_order(client, buyer, carted):
    key = "shared-key-" + uuid.uuid4().hex
    mine = checkout(client, buyer, key=key)
    assert mine.status_code == 201
    other = register(client)
    assert put_cart(client, other, carted["id"], 1).status_code == 200
    theirs = checkout(client, other, key=key)
    assert theirs.status_code == 201, theirs.text
    assert "idempotent-replayed" not in theirs.headers
    assert theirs.json()["id"] != mine.json()["id"] and theirs.json()["buyer_id"] == other["id"]
    assert stock_of(client, carted["id"]) == 2
    assert visible_order_ids(client, buyer) == [mine.json()["id"]]


# --- refusals ---------------------------------------------------------------------------------------------


def test_an_empty_cart_cannot_be_checked_out(client, buyer):
    assert_problem(checkout(client, buyer), 409, type_uri=problem_type("empty-cart"))
    assert visible_order_ids(client, buyer) == []


def test_more_than_the_stock_is_a_409_insufficient_stock(client, buyer, item):
    r = put_cart(client, buyer, item["id"], 6)
    problem = assert_problem(r, 409, type_uri=problem_type("insufficient-stock"))
    assert "5" in problem["detail"]
    assert cart_quantities(client, buyer) == {}


def test_stock_sold_since_carting_is_a_409_at_checkout_and_the_cart_is_kept(client, seller, buyer, carted):
    r = client.patch(f"/api/v1/items/{carted['id']}", json={"stock": 1}, headers=auth(seller))
    assert r.status_code == 200, r.text
    assert_problem(checkout(client, buyer), 409, type_uri=problem_type("insufficient-stock"))
    assert stock_of(client, carted["id"]) == 1
    assert cart_quantities(client, buyer) == {carted["id"]: 2}
    assert visible_order_ids(client, buyer) == []


def test_a_line_whose_item_left_the_catalog_is_shown_unavailable_and_blocks_checkout_naming_it(
    client, seller, buyer, carted
):
    other = create_item(client, seller, title=f"{unique_word()} cap", price_cents=700, stock=5)
    assert put_cart(client, buyer, other["id"], 1).status_code == 200
    assert client.delete(f"/api/v1/items/{carted['id']}", headers=auth(seller)).status_code == 204
    cart = client.get(CART, headers=auth(buyer)).json()
    # Only a line that cannot be bought says so: the others keep the contract's shape exactly.
    assert [(line["item_id"], line.get("available")) for line in cart["lines"]] == [
        (carted["id"], False),
        (other["id"], None),
    ]
    assert (cart["total_cents"], cart["currency"]) == (700, "EUR"), "only what can be bought"
    problem = assert_problem(checkout(client, buyer), 409, type_uri=problem_type("item-unavailable"))
    assert carted["title"] in problem["detail"]
    assert visible_order_ids(client, buyer) == [] and stock_of(client, other["id"]) == 5
    assert client.delete(f"{CART}/items/{carted['id']}", headers=auth(buyer)).status_code == 200
    assert checkout(client, buyer).status_code == 201


def test_a_disabled_sellers_items_leave_the_catalog_and_carts_until_they_are_enabled(
    live_server, client, buyer
):
    admin = create_admin(live_server, client)
    seller = register(client, role="seller")
    item = create_item(client, seller, title=f"{unique_word()} mug", stock=5)
    assert put_cart(client, buyer, item["id"], 1).status_code == 200

    def set_status(status: str) -> None:
        r = client.patch(f"/api/v1/admin/users/{seller['id']}", json={"status": status}, headers=auth(admin))
        assert r.status_code == 200, r.text

    def offered() -> tuple[int, list[str], list[str]]:
        page = client.get("/api/v1/items", params={"seller_id": seller["id"]}).json()
        found = client.get("/api/v1/items", params={"q": item["title"]}).json()
        return (
            client.get(f"/api/v1/items/{item['id']}").status_code,
            [i["id"] for i in page["items"]],
            [i["id"] for i in found["items"]],
        )

    set_status("disabled")
    assert offered() == (404, [], [])
    assert [line["available"] for line in client.get(CART, headers=auth(buyer)).json()["lines"]] == [False]
    assert_problem(put_cart(client, buyer, item["id"], 2), 404)
    assert_problem(checkout(client, buyer), 409, type_uri=problem_type("item-unavailable"))

    set_status("active")
    assert offered() == (200, [item["id"]], [item["id"]])
    assert checkout(client, buyer).json()["status"] == "paid"


def test_items_in_two_currencies_cannot_share_a_cart(client, seller, buyer, carted):
    dollars = create_item(client, seller, title="Yankee mug", currency="USD", stock=5)
    r = put_cart(client, buyer, dollars["id"], 1)
    assert_problem(r, 409, type_uri=problem_type("currency-mismatch"))
    assert cart_quantities(client, buyer) == {carted["id"]: 2}


def test_a_201st_distinct_item_is_a_422_naming_the_cart_and_a_line_still_changes_at_the_cap(
    client, seller, buyer
):
    cap = 200  # MAX_CART_LINES, as docs/API.md states it
    items = [create_item(client, seller, price_cents=100, stock=5) for _ in range(cap + 1)]
    for item in items[:cap]:
        assert put_cart(client, buyer, item["id"], 1).status_code == 200
    full = cart_quantities(client, buyer)

    r = put_cart(client, buyer, items[cap]["id"], 1)
    assert_problem(r, 422, type_uri=problem_type("validation-error"), fields={"cart"})
    assert cart_quantities(client, buyer) == full

    r = put_cart(client, buyer, items[0]["id"], 4)
    assert r.status_code == 200, r.text
    assert len(r.json()["lines"]) == cap and cart_quantities(client, buyer)[items[0]["id"]] == 4


def test_only_buyers_check_out(client, seller):
    assert_problem(client.post(CHECKOUT, json=card("tok_visa"), headers={"Idempotency-Key": "k"}), 401)
    assert_problem(checkout(client, seller), 403)


# --- who sees which order ---------------------------------------------------------------------------------


def test_orders_are_visible_to_their_buyer_their_sellers_and_admins_only(live_server, client, buyer):
    potter, hatter, other_buyer = (
        register(client, role="seller"),
        register(client, role="seller"),
        register(client),
    )
    mug = create_item(client, potter, stock=3)
    assert put_cart(client, buyer, mug["id"], 1).status_code == 200
    order_id = checkout(client, buyer).json()["id"]

    for outsider in (other_buyer, hatter):
        assert_problem(client.get(f"{ORDERS}/{order_id}", headers=auth(outsider)), 404)
        assert order_id not in visible_order_ids(client, outsider)
    assert_problem(client.get(f"{ORDERS}/{order_id}"), 401)
    assert_problem(client.get(f"{ORDERS}/not-an-id", headers=auth(buyer)), 404)
    assert_problem(client.get(f"{ORDERS}/{uuid.uuid4()}", headers=auth(buyer)), 404)

    assert order_of(client, potter, order_id)["id"] == order_id
    assert visible_order_ids(client, potter) == [order_id]
    admin = create_admin(live_server, client)
    assert order_of(client, admin, order_id)["buyer_id"] == buyer["id"]

    hat = create_item(client, hatter, stock=3)
    assert put_cart(client, other_buyer, hat["id"], 1).status_code == 200
    other_order = checkout(client, other_buyer).json()["id"]
    assert visible_order_ids(client, potter) == [order_id]
    assert visible_order_ids(client, hatter) == [other_order]
    assert visible_order_ids(client, admin)[:2] == [other_order, order_id]


def test_a_seller_sees_only_their_own_lines_and_subtotal_of_an_order_with_two_sellers(
    live_server, client, buyer
):
    potter, hatter = register(client, role="seller"), register(client, role="seller")
    mug = create_item(client, potter, title="Secret mug", price_cents=1999, stock=3)
    hat = create_item(client, hatter, title="Secret hat", price_cents=500, stock=3)
    assert put_cart(client, buyer, mug["id"], 2).status_code == 200
    assert put_cart(client, buyer, hat["id"], 1).status_code == 200
    r = checkout(client, buyer)
    assert r.status_code == 201, r.text
    whole = r.json()
    assert whole["total_cents"] == whole["payment"]["amount_cents"] == 2 * 1999 + 500

    for seller, item, subtotal, other in ((potter, mug, 2 * 1999, hat), (hatter, hat, 500, mug)):
        listed = client.get(ORDERS, headers=auth(seller)).json()["items"]
        for seen in (order_of(client, seller, whole["id"]), *listed):
            assert set(seen) == ORDER_FIELDS
            assert [line["item_id"] for line in seen["lines"]] == [item["id"]]
            assert seen["total_cents"] == seen["payment"]["amount_cents"] == subtotal
            assert other["title"] not in json.dumps(seen)
            assert {k: seen[k] for k in ("id", "status", "currency")} == {
                k: whole[k] for k in ("id", "status", "currency")
            }

    admin = create_admin(live_server, client)
    assert order_of(client, buyer, whole["id"]) == whole
    assert order_of(client, admin, whole["id"]) == whole


def test_a_buyers_orders_page_newest_first(client, buyer, item):
    placed = []
    for _ in range(3):
        assert put_cart(client, buyer, item["id"], 1).status_code == 200
        placed.append(checkout(client, buyer).json()["id"])
    seen, cursor = [], None
    for _ in range(3):
        params = {"limit": 1, **({"cursor": cursor} if cursor else {})}
        r = client.get(ORDERS, params=params, headers=auth(buyer))
        assert r.status_code == 200, r.text
        seen += [o["id"] for o in r.json()["items"]]
        cursor = r.json()["next_cursor"]
    assert seen == placed[::-1] and cursor is None
    assert_problem(client.get(ORDERS, params={"limit": 101}, headers=auth(buyer)), 400)
    assert_problem(client.get(ORDERS, params={"cursor": "bogus"}, headers=auth(buyer)), 400)


# --- provider webhooks, signed with the server's MARKET_PAYMENT_WEBHOOK_SECRET -----------------------------


@pytest.fixture(scope="module")
def payer(live_server):
    with live_server.client() as c:
        return register(c)


@pytest.fixture
def paid_order(client, seller, payer):
    """A new paid order of the module's `payer`."""
    item = create_item(client, seller, stock=1)
    assert put_cart(client, payer, item["id"], 1).status_code == 200
    r = checkout(client, payer)
    assert r.status_code == 201 and r.json()["status"] == "paid", r.text
    return r.json()


def provider_event(event_type: str, order: dict[str, Any], event_id: str | None = None) -> bytes:
    event = {
        "id": event_id or "evt_" + uuid.uuid4().hex,
        "type": event_type,
        "created": int(time.time()),
        "data": {
            "payment_id": "ch_sandbox_e2e",
            "order_id": order["id"],
            "amount_cents": order["total_cents"],
            "currency": order["currency"],
        },
    }
    return json.dumps(event, separators=(",", ":")).encode()


def deliver(client: httpx.Client, body: bytes, signature: str | None) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["Market-Signature"] = signature
    return client.post(PROVIDER_WEBHOOK, content=body, headers=headers)


def test_a_provider_event_without_a_valid_signature_is_a_400_and_changes_nothing(client, payer, paid_order):
    event_id = "evt_" + uuid.uuid4().hex
    body = provider_event("payment.refunded", paid_order, event_id=event_id)
    now = int(time.time())
    forgeries = {
        "wrong secret": (body, sign("whsec_not_the_secret", body)),
        "301 s old": (body, sign(WEBHOOK_SECRET, body, now - 301)),
        "from the future": (body, sign(WEBHOOK_SECRET, body, now + 400)),
        "tampered body": (body.replace(b'"amount_cents":', b'"amount_cents":9'), sign(WEBHOOK_SECRET, body)),
        "unsigned": (body, None),
        "malformed header": (body, "t=abc,v1=00"),
    }
    for name, (sent, signature) in forgeries.items():
        r = deliver(client, sent, signature)
        assert r.status_code == 400, name
        assert_problem(r, 400, type_uri=problem_type("invalid-provider-event"))
        assert order_of(client, payer, paid_order["id"]) == paid_order, name
    # The forgeries left no trace: the genuine event with the same id is still applied.
    r = deliver(client, body, sign(WEBHOOK_SECRET, body))
    assert r.status_code == 200 and r.json() == {"received": True, "outcome": "applied"}
    assert order_of(client, payer, paid_order["id"])["status"] == "refunded"


def test_the_same_provider_event_twice_is_applied_once(client, payer, paid_order):
    body = provider_event("payment.refunded", paid_order)
    first = deliver(client, body, sign(WEBHOOK_SECRET, body))
    assert first.status_code == 200 and first.json() == {"received": True, "outcome": "applied"}
    refunded = order_of(client, payer, paid_order["id"])
    assert refunded["status"] == "refunded" and refunded["payment"]["status"] == "refunded"
    again = deliver(client, body, sign(WEBHOOK_SECRET, body))
    assert again.status_code == 200 and again.json() == {"received": True, "outcome": "duplicate"}
    assert order_of(client, payer, paid_order["id"]) == refunded


def test_a_late_failure_event_for_a_paid_order_is_ignored(client, payer, paid_order):
    body = provider_event("payment.failed", paid_order)
    r = deliver(client, body, sign(WEBHOOK_SECRET, body))
    assert r.status_code == 200 and r.json() == {"received": True, "outcome": "ignored"}
    assert order_of(client, payer, paid_order["id"]) == paid_order


def test_a_refund_event_that_overtakes_the_payments_success_settles_the_order_paid_then_refunds_it(
    client, buyer, carted
):
    """Providers do not deliver events in order: a refund made at the provider may arrive while our order is
    still pending_payment (its charge timed out) or processing. Only a taken charge can be refunded, so the
    order is paid, then refunded; the payment's own success arriving later changes nothing."""
    problem = assert_problem(checkout(client, buyer, "tok_gatewayTimeout"), 503)
    pending = order_of(client, buyer, problem["order_id"])
    assert pending["status"] == "pending_payment"
    refund = json.loads(provider_event("payment.refunded", pending))
    refund["data"]["amount_cents"] = 1000
    body = json.dumps(refund).encode()
    r = deliver(client, body, sign(WEBHOOK_SECRET, body))
    assert r.status_code == 200 and r.json() == {"received": True, "outcome": "applied"}, r.text
    refunded = order_of(client, buyer, pending["id"])
    assert refunded["status"] == "partially_refunded", refunded
    assert stock_of(client, carted["id"]) == 3, "the order is placed: its stock stays sold"
    assert cart_quantities(client, buyer) == {}, "the order is placed: its lines leave the cart"

    late = provider_event("payment.succeeded", pending)
    r = deliver(client, late, sign(WEBHOOK_SECRET, late))
    assert r.status_code == 200 and r.json() == {"received": True, "outcome": "ignored"}
    assert order_of(client, buyer, pending["id"]) == refunded


def test_an_event_for_an_unknown_order_is_acknowledged(client):
    body = provider_event("payment.succeeded", {"id": str(uuid.uuid4()), "total_cents": 1, "currency": "EUR"})
    r = deliver(client, body, sign(WEBHOOK_SECRET, body))
    assert r.status_code == 200 and r.json() == {"received": True, "outcome": "unknown_order"}


def _signed_event(event_type: str, order: dict[str, Any], **overrides: Any) -> tuple[bytes, str]:
    event = json.loads(provider_event(event_type, order))
    event["data"].update(overrides.pop("data", {}))
    event.update(overrides)
    body = json.dumps(event).encode()
    return body, sign(WEBHOOK_SECRET, body)


@pytest.fixture(scope="module")
def unsettled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server on PostgreSQL (whose columns refuse NULs and overlong text) where `tok_processing` orders stay
    processing: the sandbox's own webhook goes nowhere and the reconciler waits an hour."""
    env = {
        "MARKET_PAYMENT_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "MARKET_PUBLIC_URL": "http://127.0.0.1:9",
        "MARKET_RECONCILE_INTERVAL": "3600",
    }
    with serving("postgresql", tmp_path_factory.mktemp("unsettled"), env) as server:
        yield server


def _processing_order(client: httpx.Client) -> tuple[dict[str, str], dict[str, Any]]:
    seller, buyer = register(client, "seller"), register(client)
    item = create_item(client, seller, stock=2)
    assert put_cart(client, buyer, item["id"], 1).status_code == 200
    r = checkout(client, buyer, "tok_processing")
    assert r.status_code == 201 and r.json()["status"] == "processing", r.text
    return buyer, r.json()


def test_provider_values_no_column_could_hold_are_a_400_and_a_long_decline_reason_is_cut(unsettled):
    with unsettled.client() as client:
        buyer, order = _processing_order(client)
        for name, overrides in {
            "event id of 256": {"id": "evt_" + "x" * 252},
            "NUL in the event id": {"id": "evt_\u0000x"},
            "payment id of 300": {"data": {"payment_id": "p" * 300}},
            "NUL in the payment id": {"data": {"payment_id": "ch_\u0000"}},
            "amount past int64": {"data": {"amount_cents": 2**63}},
            "not a currency": {"data": {"currency": "E" * 1000}},
        }.items():
            r = deliver(client, *_signed_event("payment.failed", order, **overrides))
            assert_problem(r, 400, type_uri=problem_type("invalid-provider-event"))
            assert order_of(client, buyer, order["id"]) == order, name
        reason = "card_declined: " + "x" * 100 + "\u0000"
        r = deliver(client, *_signed_event("payment.failed", order, data={"reason": reason}))
        assert r.status_code == 200 and r.json()["outcome"] == "applied", r.text
        assert order_of(client, buyer, order["id"])["status"] == "payment_failed"


def test_an_authentic_event_for_another_amount_or_currency_changes_nothing(unsettled):
    with unsettled.client() as client:
        buyer, order = _processing_order(client)
        for overrides in ({"amount_cents": 1}, {"currency": "USD"}):
            body, signature = _signed_event("payment.succeeded", order, data=overrides)
            r = deliver(client, body, signature)
            assert r.status_code == 200 and r.json() == {"received": True, "outcome": "mismatched"}, r.text
            assert order_of(client, buyer, order["id"]) == order
            again = deliver(client, body, signature)
            assert again.json()["outcome"] == "duplicate"
        body, signature = _signed_event("payment.succeeded", order)  # the order's own amount and currency
        assert deliver(client, body, signature).json()["outcome"] == "applied"
        assert order_of(client, buyer, order["id"])["status"] == "paid"


def test_the_background_reconciler_pays_an_order_whose_gateway_timed_out(
    live_server, client, buyer, carted, tmp_path
):
    problem = assert_problem(checkout(client, buyer, "tok_gatewayTimeout"), 503)
    # A second replica on the same database, whose background reconciler runs every second.
    replica = start_server(
        live_server.env["MARKET_DATABASE_URL"],
        tmp_path,
        live_server.engine,
        {"MARKET_PAYMENT_WEBHOOK_SECRET": WEBHOOK_SECRET, "MARKET_RECONCILE_INTERVAL": "1"},
    )
    try:
        paid = wait_for_status(client, buyer, problem["order_id"], "paid", within_s=30)
    finally:
        stop_server(replica)
    assert paid["payment"]["status"] == "succeeded"
    assert stock_of(client, carted["id"]) == 3
    assert cart_quantities(client, buyer) == {}


def test_on_an_ipv6_address_the_sandbox_still_delivers_its_webhook_to_the_service(tmp_path):
    """Bound to an IPv6 address without MARKET_PUBLIC_URL, the service's own URL is `http://[::1]:<port>`:
    the sandbox posts the `payment.succeeded` of a `tok_processing` charge there, and the order is paid at once
    (the reconciler, an hour away, has nothing to do with it)."""
    env = {
        "MARKET_HOST": "::1",
        "MARKET_PAYMENT_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "MARKET_RECONCILE_INTERVAL": "3600",
    }
    server = start_server(f"sqlite:///{tmp_path / 'market.db'}", tmp_path, "sqlite", env)
    try:
        with server.client() as client:
            seller, buyer = register(client, "seller"), register(client)
            item = create_item(client, seller, stock=2)
            assert put_cart(client, buyer, item["id"], 1).status_code == 200
            r = checkout(client, buyer, "tok_processing")
            assert r.status_code == 201 and r.json()["status"] == "processing", r.text
            wait_for_status(client, buyer, r.json()["id"], "paid", within_s=20)
    finally:
        stop_server(server)
    assert "Task exception was never retrieved" not in server.log.read_text()


def test_a_gateway_timeout_is_a_503_pending_order_that_market_payments_reconcile_pays(
    live_server, client, buyer, carted
):
    r = checkout(client, buyer, "tok_gatewayTimeout")
    problem = assert_problem(r, 503, type_uri=problem_type("payment-gateway-unavailable"))
    # The safe retry is the same key: a new one is a new purchase, charged again for the cart it finds (the
    # cart is kept until reconciliation settles this order, at most MARKET_RECONCILE_INTERVAL later).
    assert "same Idempotency-Key" in problem["detail"] and "charged twice" not in problem["detail"]
    order = order_of(client, buyer, problem["order_id"])
    assert order["status"] == "pending_payment" and order["payment"]["status"] == "pending"
    assert stock_of(client, carted["id"]) == 3, "stock stays reserved while the outcome is unknown"
    assert cart_quantities(client, buyer) == {carted["id"]: 2}

    out = run_reconcile(live_server)
    assert re.search(r"\bpaid: [1-9]", out), out
    paid = order_of(client, buyer, problem["order_id"])
    assert paid["status"] == "paid" and paid["payment"]["status"] == "succeeded"
    assert stock_of(client, carted["id"]) == 3
    assert cart_quantities(client, buyer) == {}
