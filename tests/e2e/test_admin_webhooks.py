"""Webhook deliveries for operators over HTTP on both engines: admins list every delivery by seller and status
and retry a failed one now; a seller retries their own; the retry keeps the `webhook-id`."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest

from tests.support.live_server import LiveServer, auth, register, serving
from tests.support.servers.webhook_receiver import WebhookReceiver, running_receiver

from .helpers import assert_problem, create_admin, create_item, problem_type

ADMIN_DELIVERIES = "/api/v1/admin/webhooks/deliveries"
SELLER_DELIVERIES = "/api/v1/seller/webhook/deliveries"
# One retry a second after the first attempt: a failing endpoint makes a `failed` delivery within seconds.
DEV_SETTINGS = {"MARKET_WEBHOOKS_ALLOW_PRIVATE": "1", "MARKET_WEBHOOK_RETRY_SCHEDULE": "1s"}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def dev_server(request, tmp_path_factory) -> Iterator[LiveServer]:
    with serving(
        request.param, tmp_path_factory.mktemp(f"admin-webhooks-{request.param}"), DEV_SETTINGS
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


def _failed_delivery(client, receiver):
    """A seller whose endpoint answers 500, and their `order.paid` delivery once it has `failed`."""
    seller = register(client, "seller")
    item = create_item(client, seller, stock=5)
    assert (
        client.put("/api/v1/seller/webhook", json={"url": receiver.url}, headers=auth(seller)).status_code
        == 200
    )
    buyer = register(client)
    client.put(f"/api/v1/cart/items/{item['id']}", json={"quantity": 1}, headers=auth(buyer))
    r = client.post(
        "/api/v1/checkout",
        json={"payment_method": {"type": "card", "token": "tok_visa"}},
        headers={**auth(buyer), "Idempotency-Key": uuid.uuid4().hex},
    )
    assert r.status_code == 201, r.text
    delivery = _wait(client, seller, lambda d: d["status"] == "failed")
    return seller, delivery


def _wait(client, seller, done, timeout=30.0):
    deadline = time.monotonic() + timeout
    while True:
        items = client.get(SELLER_DELIVERIES, headers=auth(seller)).json()["items"]
        if items and done(items[0]):
            return items[0]
        assert time.monotonic() < deadline, items
        time.sleep(0.2)


def test_an_admin_retries_a_failed_delivery_now_with_the_same_webhook_id(client, admin, receiver):
    seller, delivery = _failed_delivery(client, receiver)
    first_id = receiver.received()[0].headers["webhook-id"]
    receiver.default_status = 200

    r = client.post(f"{ADMIN_DELIVERIES}/{delivery['id']}/retry", headers=auth(admin))

    assert r.status_code == 202, r.text
    assert (r.json()["id"], r.json()["seller_id"], r.json()["status"]) == (
        delivery["id"],
        seller["id"],
        "pending",
    )
    delivered = _wait(client, seller, lambda d: d["status"] == "delivered")
    assert delivered["attempt_count"] == 3
    assert [got.headers["webhook-id"] for got in receiver.received()] == [first_id] * 3
    assert first_id == delivery["id"]

    again = client.post(f"{ADMIN_DELIVERIES}/{delivery['id']}/retry", headers=auth(admin))
    assert_problem(again, 409, type_uri=problem_type("delivery-not-retryable"))
    trail = client.get(
        "/api/v1/admin/audit", params={"target_id": delivery["id"]}, headers=auth(admin)
    ).json()
    assert [(e["action"], e["details"]) for e in trail["items"]] == [
        ("webhook.retried", {"seller_id": seller["id"], "status_from": "failed"})
    ]


def test_a_seller_retries_their_own_delivery_but_not_anothers(client, admin, receiver):
    seller, delivery = _failed_delivery(client, receiver)
    other_seller, buyer = register(client, "seller"), register(client)
    url = f"{SELLER_DELIVERIES}/{delivery['id']}/retry"

    assert_problem(client.post(url), 401)
    assert_problem(client.post(url, headers=auth(buyer)), 403)
    assert_problem(client.post(url, headers=auth(admin)), 403)  # admins use their own route
    assert_problem(client.post(url, headers=auth(other_seller)), 404, type_uri=problem_type("not-found"))
    assert_problem(client.post(f"{SELLER_DELIVERIES}/{uuid.uuid4()}/retry", headers=auth(seller)), 404)
    assert client.get(SELLER_DELIVERIES, headers=auth(seller)).json()["items"][0]["status"] == "failed"

    receiver.default_status = 200
    r = client.post(url, headers=auth(seller))

    assert r.status_code == 202, r.text
    assert r.json()["status"] == "pending"
    _wait(client, seller, lambda d: d["status"] == "delivered")
    # A seller's own retry is not an admin write: nothing in the audit trail.
    trail = client.get(
        "/api/v1/admin/audit", params={"target_id": delivery["id"]}, headers=auth(admin)
    ).json()
    assert trail["items"] == []


def test_admins_list_deliveries_by_seller_and_status(client, admin, receiver):
    seller, delivery = _failed_delivery(client, receiver)
    headers = auth(admin)

    mine = client.get(ADMIN_DELIVERIES, params={"seller_id": seller["id"]}, headers=headers).json()
    failed = client.get(
        ADMIN_DELIVERIES, params={"seller_id": seller["id"], "status": "failed"}, headers=headers
    )
    delivered = client.get(
        ADMIN_DELIVERIES, params={"seller_id": seller["id"], "status": "delivered"}, headers=headers
    )

    assert [d["id"] for d in mine["items"]] == [delivery["id"]]
    assert len(mine["items"][0]["attempts"]) == 2
    assert [d["id"] for d in failed.json()["items"]] == [delivery["id"]]
    assert delivered.json()["items"] == []
    everything = client.get(ADMIN_DELIVERIES, params={"limit": 100}, headers=headers).json()
    assert delivery["id"] in [d["id"] for d in everything["items"]]


def test_only_admins_list_every_delivery(client, admin):
    assert_problem(client.get(ADMIN_DELIVERIES), 401)
    for role in ("buyer", "seller"):
        assert_problem(client.get(ADMIN_DELIVERIES, headers=auth(register(client, role))), 403)
    assert_problem(
        client.post(f"{ADMIN_DELIVERIES}/{uuid.uuid4()}/retry", headers=auth(register(client, "seller"))), 403
    )
    assert_problem(client.post(f"{ADMIN_DELIVERIES}/{uuid.uuid4()}/retry", headers=auth(admin)), 404)
    assert_problem(client.post(f"{ADMIN_DELIVERIES}/not-an-id/retry", headers=auth(admin)), 404)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"seller": "x"}, "seller"),
        ({"seller_id": "x"}, "seller_id"),
        ({"status": "lost"}, "status"),
        ({"limit": "500"}, "limit"),
    ],
)
def test_a_bad_delivery_filter_is_a_400_naming_it(client, admin, params, field):
    r = client.get(ADMIN_DELIVERIES, params=params, headers=auth(admin))
    assert_problem(r, 400, type_uri=problem_type("invalid-parameter"), fields={field})
