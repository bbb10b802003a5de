"""What a refund changes beyond the order, over HTTP on both engines: the seller's signed `order.refunded`
webhook (through the outbox, to a real receiver on 127.0.0.1), the seller dashboard's net revenue, the payments
report's refunded and net amounts, the audit trail and the `market.refunds` metric."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest
from standardwebhooks import Webhook

from tests.support.live_server import LiveServer, auth, register, start_server, stop_server
from tests.support.servers.webhook_receiver import running_receiver

from .helpers import create_admin, create_item
from .test_seller_webhooks import DEV_SETTINGS, fresh_database, set_webhook

PRICE = 1250


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def dev_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """The service with private webhook targets allowed (the receiver is on 127.0.0.1)."""
    workdir = tmp_path_factory.mktemp(f"refund-reports-{request.param}")
    with fresh_database(request.param, workdir) as url:
        server = start_server(url, workdir, request.param, DEV_SETTINGS)
        try:
            yield server
        finally:
            stop_server(server)


def buy(client: httpx.Client, buyer, item, quantity: int) -> dict:
    r = client.put(f"/api/v1/cart/items/{item['id']}", json={"quantity": quantity}, headers=auth(buyer))
    assert r.status_code == 200, r.text
    r = client.post(
        "/api/v1/checkout",
        json={"payment_method": {"type": "card", "token": "tok_visa"}},
        headers={**auth(buyer), "Idempotency-Key": uuid.uuid4().hex},
    )
    assert r.status_code == 201, r.text
    return r.json()


def test_a_refund_reaches_the_seller_and_every_figure(dev_server):
    with dev_server.client() as client, running_receiver() as receiver:
        seller, buyer = register(client, "seller"), register(client)
        secret = set_webhook(client, seller, receiver.url).json()["secret"]
        item = create_item(client, seller, price_cents=PRICE, stock=50)
        admin = create_admin(dev_server, client)
        order = buy(client, buyer, item, quantity=4)  # 5000
        receiver.wait_for(1)  # order.paid

        before = client.get("/api/v1/seller/dashboard", headers=auth(seller)).json()
        assert before["revenue"] == [
            {
                "currency": "EUR",
                "revenue_cents": 4 * PRICE,
                "orders": 1,
                "units": 4,
                "refunded_cents": 0,
                "net_revenue_cents": 4 * PRICE,
            }
        ]
        r = client.post(
            f"/api/v1/admin/orders/{order['id']}/refunds",
            json={"amount_cents": 1200, "reason": "damaged"},
            headers={**auth(admin), "Idempotency-Key": uuid.uuid4().hex},
        )
        assert r.status_code == 201, r.text
        refund = r.json()

        paid, refunded = receiver.wait_for(2)
        event = Webhook(secret).verify(refunded.body, refunded.headers)
        assert Webhook(secret).verify(paid.body, paid.headers)["type"] == "order.paid"
        assert event["type"] == "order.refunded"
        assert event["data"]["order_id"] == order["id"]
        assert event["data"]["status"] == "partially_refunded"
        assert event["data"]["refund"]["id"] == refund["id"]
        assert (event["data"]["refund"]["amount_cents"], event["data"]["refund"]["reason"]) == (
            1200,
            "damaged",
        )

        after = client.get("/api/v1/seller/dashboard", headers=auth(seller)).json()
        assert after["revenue"][0]["revenue_cents"] == 4 * PRICE
        assert after["revenue"][0]["refunded_cents"] == 1200
        assert after["revenue"][0]["net_revenue_cents"] == 4 * PRICE - 1200
        assert (after["refunds"], after["orders"]) == (1, 1)

        report = client.get("/api/v1/admin/analytics/payments", headers=auth(admin)).json()
        eur = next(r for r in report["refunds"] if r["currency"] == "EUR")
        paid_eur = next(a for a in report["amounts"] if a["currency"] == "EUR")
        assert (eur["refunds"], eur["refunded_cents"]) == (1, 1200)
        assert eur["net_cents"] == paid_eur["sum_cents"] - 1200

        audit = client.get(
            "/api/v1/admin/audit", params={"action": "order.refunded"}, headers=auth(admin)
        ).json()["items"]
        assert [(e["target_type"], e["target_id"], e["actor_id"]) for e in audit] == [
            ("order", order["id"], admin["id"])
        ]
        assert (
            audit[0]["details"]["amount_cents"] == 1200 and audit[0]["details"]["refund_id"] == refund["id"]
        )

        metrics = client.get("/metrics").text
        damaged = [line for line in metrics.splitlines() if line.startswith("market_refunds_total{")]
        assert any(
            'market_refund_reason="damaged"' in line and float(line.split()[-1]) == 1 for line in damaged
        ), damaged


def test_the_sellers_shares_of_a_refund_add_up_to_it(dev_server):
    """A refund of an order holding three sellers' lines (1001 each) is shared in proportion to their subtotals
    in whole cents that add up to what went back: refunds of 1, 1, 1 and 2 cents leave the sellers' books 5
    cents lighter in all, not 3 (each third rounded down)."""
    with dev_server.client() as client:
        admin, buyer = create_admin(dev_server, client), register(client)
        sellers = [register(client, "seller") for _ in range(3)]
        for seller in sellers:
            item = create_item(client, seller, price_cents=1001, currency="USD", stock=5)
            r = client.put(f"/api/v1/cart/items/{item['id']}", json={"quantity": 1}, headers=auth(buyer))
            assert r.status_code == 200, r.text
        r = client.post(
            "/api/v1/checkout",
            json={"payment_method": {"type": "card", "token": "tok_visa"}},
            headers={**auth(buyer), "Idempotency-Key": uuid.uuid4().hex},
        )
        assert r.status_code == 201 and r.json()["total_cents"] == 3003, r.text
        order_id = r.json()["id"]
        for cents in (1, 1, 1, 2):
            r = client.post(
                f"/api/v1/admin/orders/{order_id}/refunds",
                json={"amount_cents": cents, "reason": "requested_by_customer"},
                headers={**auth(admin), "Idempotency-Key": uuid.uuid4().hex},
            )
            assert r.status_code == 201, r.text

        books = [client.get("/api/v1/seller/dashboard", headers=auth(s)).json()["revenue"] for s in sellers]
        assert all(len(b) == 1 and b[0]["revenue_cents"] == 1001 for b in books), books
        assert sum(b[0]["refunded_cents"] for b in books) == 5, books
        assert sorted(b[0]["refunded_cents"] for b in books) == [1, 2, 2], books
        assert all(b[0]["net_revenue_cents"] == 1001 - b[0]["refunded_cents"] for b in books), books


def _numbers(value: object) -> set[int]:
    if isinstance(value, dict):
        return set().union(*(_numbers(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(_numbers(v) for v in value))
    return {value} if isinstance(value, int) and not isinstance(value, bool) else set()


def test_each_seller_hears_of_only_their_own_share_of_a_refund_of_a_shared_order(dev_server):
    """An order of 3 x 1300 from one seller and 1 x 1100 from another (5000), refunded 2000: the first seller's
    `order.refunded` says 1560 (2000 * 3900 / 5000), the second's 440; neither carries the refund's whole
    amount, the order's total or the other seller's figures."""
    with dev_server.client() as client, running_receiver() as first_hook, running_receiver() as second_hook:
        admin, buyer = create_admin(dev_server, client), register(client)
        first, second = register(client, "seller"), register(client, "seller")
        secrets = [
            set_webhook(client, seller, hook.url).json()["secret"]
            for seller, hook in ((first, first_hook), (second, second_hook))
        ]
        for seller, price, quantity in ((first, 1300, 3), (second, 1100, 1)):
            item = create_item(client, seller, price_cents=price, stock=10)
            r = client.put(
                f"/api/v1/cart/items/{item['id']}", json={"quantity": quantity}, headers=auth(buyer)
            )
            assert r.status_code == 200, r.text
        r = client.post(
            "/api/v1/checkout",
            json={"payment_method": {"type": "card", "token": "tok_visa"}},
            headers={**auth(buyer), "Idempotency-Key": uuid.uuid4().hex},
        )
        assert r.status_code == 201 and r.json()["total_cents"] == 5000, r.text
        order_id = r.json()["id"]
        r = client.post(
            f"/api/v1/admin/orders/{order_id}/refunds",
            json={"amount_cents": 2000, "reason": "damaged"},
            headers={**auth(admin), "Idempotency-Key": uuid.uuid4().hex},
        )
        assert r.status_code == 201, r.text

        for hook, secret, share, own, others in (
            (first_hook, secrets[0], 1560, {3900, 1300, 3}, {1100, 440}),
            (second_hook, secrets[1], 440, {1100, 1}, {3900, 1300, 1560}),
        ):
            # The two deliveries may arrive in either order (each is attempted on its own).
            events = [Webhook(secret).verify(got.body, got.headers) for got in hook.wait_for(2)]
            assert sorted(e["type"] for e in events) == ["order.paid", "order.refunded"]
            (event,) = [e for e in events if e["type"] == "order.refunded"]
            assert event["data"]["status"] == "partially_refunded"
            assert event["data"]["refund"]["amount_cents"] == share
            assert event["data"]["refund"]["currency"] == "EUR"
            numbers = _numbers(event["data"])
            assert own <= numbers and share in numbers, numbers
            assert not numbers & ({2000, 5000} | others), numbers
