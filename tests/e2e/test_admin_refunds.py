"""Refunds started by the marketplace, over HTTP on both engines: who may refund, partial then full refunds and
the order's status, the idempotency key's rules, and twenty refunds of one order racing (never more than its
total). The sandbox gateway also posts its signed `payment.refunded` event for each refund back to the
service, which recognises its own refund in it: nothing is refunded twice."""

from __future__ import annotations

import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.support.backups import postgres_sql
from tests.support.live_server import auth, register, serving

from .helpers import assert_problem, create_admin, create_item, problem_type

PRICE = 1000


def refunds_path(order_id: str) -> str:
    return f"/api/v1/admin/orders/{order_id}/refunds"


def buy(client: httpx.Client, buyer, item, quantity: int = 2, token: str = "tok_visa") -> dict:
    r = client.put(f"/api/v1/cart/items/{item['id']}", json={"quantity": quantity}, headers=auth(buyer))
    assert r.status_code == 200, r.text
    r = client.post(
        "/api/v1/checkout",
        json={"payment_method": {"type": "card", "token": token}},
        headers={**auth(buyer), "Idempotency-Key": uuid.uuid4().hex},
    )
    assert r.status_code in (201, 402), r.text
    return r.json()


def refund(client: httpx.Client, admin, order_id: str, key: str | None = None, **body) -> httpx.Response:
    headers = {**auth(admin), "Idempotency-Key": key or uuid.uuid4().hex}
    return client.post(
        refunds_path(order_id), json={"reason": "requested_by_customer", **body}, headers=headers
    )


def order_status(client: httpx.Client, admin, order_id: str) -> str:
    r = client.get(f"/api/v1/orders/{order_id}", headers=auth(admin))
    assert r.status_code == 200, r.text
    return r.json()["status"]


@pytest.fixture(scope="module")
def shop(live_server):
    with live_server.client() as client:
        seller = register(client, "seller")
        buyer = register(client)
        item = create_item(client, seller, price_cents=PRICE, stock=1000)
        admin = create_admin(live_server, client)
    return {"seller": seller, "buyer": buyer, "item": item, "admin": admin}


def test_only_an_admin_refunds_and_an_unknown_order_is_not_found(client, shop):
    order = buy(client, shop["buyer"], shop["item"])
    path = refunds_path(order["id"])
    body = {"reason": "duplicate", "amount_cents": 100}
    key = {"Idempotency-Key": uuid.uuid4().hex}
    assert_problem(client.post(path, json=body, headers=key), 401, type_uri=problem_type("unauthenticated"))
    for someone in ("buyer", "seller"):
        assert_problem(client.post(path, json=body, headers={**key, **auth(shop[someone])}), 403)
    assert order_status(client, shop["admin"], order["id"]) == "paid"

    r = client.post(path, json=body, headers={**key, **auth(shop["admin"])})
    assert r.status_code == 201, r.text
    refund_out = r.json()
    assert set(refund_out) == {"id", "order_id", "amount_cents", "currency", "status", "reason", "created_at"}
    assert (refund_out["order_id"], refund_out["amount_cents"], refund_out["currency"]) == (
        order["id"],
        100,
        "EUR",
    )
    assert (refund_out["status"], refund_out["reason"]) == ("succeeded", "duplicate")

    # A malformed id is a 404 however long it is, as on every other path with an id (API.md).
    for unknown in (str(uuid.uuid4()), "not-an-id", "x" * 65, order["id"] + "-" + "0" * 40):
        assert_problem(refund(client, shop["admin"], unknown), 404, type_uri=problem_type("not-found"))


def test_a_partial_refund_then_the_rest_and_nothing_more(client, shop):
    admin = shop["admin"]
    order = buy(client, shop["buyer"], shop["item"])
    r = refund(client, admin, order["id"], amount_cents=300)
    assert r.status_code == 201, r.text
    assert order_status(client, admin, order["id"]) == "partially_refunded"
    assert_problem(
        refund(client, admin, order["id"], amount_cents=2 * PRICE - 299),
        409,
        type_uri=problem_type("refund-exceeds-balance"),
    )
    rest = refund(client, admin, order["id"])  # no amount: all that is left
    assert rest.status_code == 201, rest.text
    assert rest.json()["amount_cents"] == 2 * PRICE - 300
    assert order_status(client, admin, order["id"]) == "refunded"
    assert_problem(refund(client, admin, order["id"]), 409, type_uri=problem_type("order-not-refundable"))
    filtered = client.get(
        "/api/v1/admin/orders", params={"status": "refunded", "limit": 100}, headers=auth(admin)
    )
    assert order["id"] in [o["id"] for o in filtered.json()["items"]]


def test_an_order_that_is_not_paid_cannot_be_refunded(client, shop):
    declined = buy(client, shop["buyer"], shop["item"], token="tok_chargeDeclined")
    assert_problem(
        refund(client, shop["admin"], declined["order_id"]),
        409,
        type_uri=problem_type("order-not-refundable"),
    )


def test_bad_input_is_a_4xx_problem(client, shop):
    order = buy(client, shop["buyer"], shop["item"])
    admin = shop["admin"]
    for no_key in ({}, {"Idempotency-Key": ""}):  # an empty key is no key
        assert_problem(
            client.post(
                refunds_path(order["id"]), json={"reason": "other"}, headers={**auth(admin), **no_key}
            ),
            400,
            type_uri=problem_type("idempotency-key-required"),
            fields={"Idempotency-Key"},
        )
    for body in (
        {"reason": "because"},
        {"reason": "other", "amount_cents": 0},
        {"reason": "other", "amount_cents": -5},
        {"reason": "other", "amount_cents": 1.5},
        {"amount_cents": 10},
        {"reason": "other", "currency": "USD"},
    ):
        headers = {**auth(admin), "Idempotency-Key": uuid.uuid4().hex}
        r = client.post(refunds_path(order["id"]), json=body, headers=headers)
        assert 400 <= r.status_code < 500, (body, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
    assert order_status(client, admin, order["id"]) == "paid"


def test_the_idempotency_key_replays_refuses_another_body_and_is_scoped_per_admin(client, live_server, shop):
    admin = shop["admin"]
    order = buy(client, shop["buyer"], shop["item"])
    key = uuid.uuid4().hex
    first = refund(client, admin, order["id"], key=key, amount_cents=100)
    again = refund(client, admin, order["id"], key=key, amount_cents=100)
    assert first.status_code == again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert again.json() == first.json()
    assert_problem(
        refund(client, admin, order["id"], key=key, amount_cents=200),
        422,
        type_uri=problem_type("idempotency-key-reused"),
        fields={"Idempotency-Key"},
    )
    other_admin = create_admin(live_server, client)
    theirs = refund(client, other_admin, order["id"], key=key, amount_cents=100)
    assert theirs.status_code == 201 and theirs.json()["id"] != first.json()["id"]
    rest = refund(client, admin, order["id"])
    assert rest.json()["amount_cents"] == 2 * PRICE - 200  # two refunds of 100, not three


def test_a_retry_naming_the_order_in_another_spelling_replays_the_refund(client, shop):
    # The order's id in capitals is the same order (GET /orders/{ID} finds it): a retry with the same key and
    # body, naming it as the first answer does, is the first answer again, not a key "used for another order".
    admin = shop["admin"]
    order = buy(client, shop["buyer"], shop["item"])
    key = uuid.uuid4().hex
    first = refund(client, admin, order["id"].upper(), key=key, amount_cents=100)
    assert first.status_code == 201, first.text
    again = refund(client, admin, first.json()["order_id"], key=key, amount_cents=100)
    assert again.status_code == 201, again.text
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()


def test_twenty_refunds_of_one_order_at_once_never_exceed_its_total(live_server, shop):
    admin = shop["admin"]
    with live_server.client() as client:
        order = buy(client, shop["buyer"], shop["item"], quantity=2)
    total = order["total_cents"]
    assert total == 2 * PRICE

    def one(i: int) -> httpx.Response:
        with live_server.client() as c:
            # A mix of partial amounts and "all that is left".
            body = {"amount_cents": 300} if i % 4 else {}
            return refund(c, admin, order["id"], **body)

    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(one, range(20)))

    # 503 (with Retry-After) is what a request gets when it waits on the database's lock past
    # MARKET_DATABASE_LOCK_TIMEOUT, as any write does on a machine this busy; never a 500, never too much money.
    statuses = sorted(r.status_code for r in answers)
    assert set(statuses) <= {201, 409, 503}, [r.text for r in answers if r.status_code not in (201, 409, 503)]
    for r in answers:
        if r.status_code == 503:
            assert r.headers["Retry-After"] and r.json()["status"] == 503, r.text
    refunded = sum(r.json()["amount_cents"] for r in answers if r.status_code == 201)
    assert 0 < refunded <= total
    for r in answers:
        if r.status_code == 409:
            assert r.json()["type"] in (
                problem_type("refund-exceeds-balance"),
                problem_type("order-not-refundable"),
            ), r.text

    with live_server.client() as client:
        time.sleep(
            1.0
        )  # the sandbox's own payment.refunded events arrive meanwhile: recognised, not re-applied
        left = refund(client, admin, order["id"])
        if left.status_code == 201:
            rest = left.json()["amount_cents"]
            # A 503 may have come after its refund went through (the provider's event then settles it).
            assert rest == total - refunded if 503 not in statuses else rest <= total - refunded
        else:
            assert_problem(left, 409, type_uri=problem_type("order-not-refundable"))
            assert refunded == total or 503 in statuses
        deadline = time.monotonic() + 20  # a refund settled by the provider's event may still be on its way
        while order_status(client, admin, order["id"]) != "refunded":
            assert time.monotonic() < deadline, order_status(client, admin, order["id"])
            time.sleep(0.5)


STUCK = re.compile(r"^market_refunds_stuck(?:\{[^}]*\})? (\S+)$", re.M)


def stuck_refunds(client: httpx.Client) -> float | None:
    found = STUCK.search(client.get("/metrics").text)
    return None if found is None else float(found[1])


def wait_for_stuck_refunds(client: httpx.Client, expected: float) -> None:
    deadline = time.monotonic() + 30
    while stuck_refunds(client) != expected and time.monotonic() < deadline:
        time.sleep(0.2)
    assert stuck_refunds(client) == expected


def test_a_refund_pending_past_a_day_is_counted_in_metrics_for_an_admin_to_look_into(tmp_path):
    """The reconciler stops asking the provider about a refund pending for 24 h and counts it in
    `market_refunds_stuck` (what MarketRefundsStuck alerts on). A refund the provider never answered about is
    made here by ageing one in the database: the sandbox always answers."""
    with (
        serving("postgresql", tmp_path, {"MARKET_RECONCILE_INTERVAL": "1"}) as server,
        server.client() as client,
    ):
        seller, buyer = register(client, "seller"), register(client)
        admin = create_admin(server, client)
        order = buy(client, buyer, create_item(client, seller, price_cents=PRICE, stock=10))
        made = refund(client, admin, order["id"], amount_cents=100)
        assert made.status_code == 201, made.text
        # The sandbox's own `payment.refunded` event follows the answer: let it land first, or it would settle
        # the refund aged below.
        deadline = time.monotonic() + 30
        while "POST /api/v1/webhooks/payments 200" not in server.log.read_text():
            assert time.monotonic() < deadline, "the sandbox's payment.refunded event never arrived"
            time.sleep(0.1)
        wait_for_stuck_refunds(client, 0)

        url = server.env["MARKET_DATABASE_URL"]
        postgres_sql(
            url,
            "UPDATE refunds SET status = 'pending', created_at = created_at - interval '25 hours' WHERE id = $1",
            uuid.UUID(made.json()["id"]),
        )
        wait_for_stuck_refunds(client, 1)

        postgres_sql(
            url, "UPDATE refunds SET status = 'succeeded' WHERE id = $1", uuid.UUID(made.json()["id"])
        )
        wait_for_stuck_refunds(client, 0)
