"""Order lists with real filters over HTTP on both engines: `GET /admin/orders` for admins, and the same
filters on `GET /orders` within what the caller may see."""

from __future__ import annotations

import uuid

import pytest

from tests.support.live_server import auth, register

from .helpers import assert_problem, create_admin, create_item, problem_type

ADMIN_ORDERS = "/api/v1/admin/orders"
ORDERS = "/api/v1/orders"


def _buy(client, buyer, items, token="tok_visa"):
    for item in items:
        assert (
            client.put(
                f"/api/v1/cart/items/{item['id']}", json={"quantity": 1}, headers=auth(buyer)
            ).status_code
            == 200
        )
    r = client.post(
        "/api/v1/checkout",
        json={"payment_method": {"type": "card", "token": token}},
        headers={**auth(buyer), "Idempotency-Key": uuid.uuid4().hex},
    )
    assert r.status_code in (201, 402), r.text
    return r.json()["order_id"] if r.status_code == 402 else r.json()["id"]


@pytest.fixture(scope="module")
def shop(live_server):
    """Two sellers, two buyers, three orders: buyer 1 pays for A's item, then for A's and B's; buyer 2's card
    is declined for B's item. And an admin."""
    with live_server.client() as client:
        seller_a, seller_b = register(client, "seller"), register(client, "seller")
        buyer_1, buyer_2 = register(client), register(client)
        a = create_item(client, seller_a, stock=10)
        b = create_item(client, seller_b, stock=10)
        first = _buy(client, buyer_1, [a])
        both = _buy(client, buyer_1, [a, b])
        declined = _buy(client, buyer_2, [b], token="tok_chargeDeclined")
        admin = create_admin(live_server, client)
    return {
        "seller_a": seller_a,
        "seller_b": seller_b,
        "buyer_1": buyer_1,
        "buyer_2": buyer_2,
        "admin": admin,
        "first": first,
        "both": both,
        "declined": declined,
    }


def _ids(client, path, account, **params):
    r = client.get(path, params=params, headers=auth(account))
    assert r.status_code == 200, r.text
    return [o["id"] for o in r.json()["items"]]


def test_only_admins_list_every_order(client, shop):
    assert_problem(client.get(ADMIN_ORDERS), 401, type_uri=problem_type("unauthenticated"))
    for someone in ("buyer_1", "seller_a", "seller_b"):
        assert_problem(client.get(ADMIN_ORDERS, headers=auth(shop[someone])), 403)
    assert shop["first"] in _ids(client, ADMIN_ORDERS, shop["admin"], limit=100)


def test_admins_filter_orders_by_buyer_seller_and_status(client, shop):
    admin, s = shop["admin"], shop
    assert _ids(client, ADMIN_ORDERS, admin, buyer_id=s["buyer_1"]["id"]) == [s["both"], s["first"]]
    assert _ids(client, ADMIN_ORDERS, admin, seller_id=s["seller_b"]["id"]) == [s["declined"], s["both"]]
    assert _ids(client, ADMIN_ORDERS, admin, seller_id=s["seller_b"]["id"], status="payment_failed") == [
        s["declined"]
    ]
    assert _ids(client, ADMIN_ORDERS, admin, buyer_id=s["buyer_2"]["id"], status="paid") == []
    assert _ids(client, ADMIN_ORDERS, admin, buyer_id=str(uuid.uuid4())) == []


def test_admins_filter_orders_by_time_and_page_through_a_filter(client, shop):
    admin, s = shop["admin"], shop
    mine = {"buyer_id": s["buyer_1"]["id"]}
    newest = client.get(f"{ORDERS}/{s['both']}", headers=auth(admin)).json()["created_at"]

    assert _ids(client, ADMIN_ORDERS, admin, **mine, **{"from": newest}) == [s["both"]]
    assert _ids(client, ADMIN_ORDERS, admin, **mine, to=newest) == [s["first"]]
    assert _ids(client, ADMIN_ORDERS, admin, **mine, **{"from": "2999-01-01"}) == []

    first = client.get(ADMIN_ORDERS, params={**mine, "limit": 1}, headers=auth(admin)).json()
    second = client.get(
        ADMIN_ORDERS, params={**mine, "limit": 1, "cursor": first["next_cursor"]}, headers=auth(admin)
    ).json()
    assert [o["id"] for o in first["items"] + second["items"]] == [s["both"], s["first"]]
    assert second["next_cursor"] is None
    other_filter = client.get(
        ADMIN_ORDERS, params={"status": "paid", "cursor": first["next_cursor"]}, headers=auth(admin)
    )
    assert_problem(other_filter, 400, type_uri=problem_type("invalid-cursor"))


def test_the_same_filters_apply_to_get_orders_within_the_callers_visibility(client, shop):
    s = shop
    assert _ids(client, ORDERS, s["buyer_1"], status="paid") == [s["both"], s["first"]]
    assert _ids(client, ORDERS, s["buyer_1"], seller_id=s["seller_b"]["id"]) == [s["both"]]
    assert _ids(client, ORDERS, s["buyer_1"], buyer_id=s["buyer_2"]["id"]) == []  # not theirs to see
    assert _ids(client, ORDERS, s["seller_a"], buyer_id=s["buyer_1"]["id"]) == [s["both"], s["first"]]
    assert _ids(client, ORDERS, s["seller_a"], buyer_id=s["buyer_2"]["id"]) == []
    assert _ids(client, ORDERS, s["seller_b"], status="payment_failed") == [s["declined"]]
    # A seller still sees only their own lines of a filtered order.
    [both] = client.get(
        ORDERS,
        params={"seller_id": s["seller_b"]["id"], "buyer_id": s["buyer_1"]["id"]},
        headers=auth(s["seller_b"]),
    ).json()["items"]
    assert len(both["lines"]) == 1


def test_a_seller_cannot_learn_which_of_their_orders_hold_another_seller_s_items(client, shop):
    # A seller's view of an order holds only their own lines: filtering it by another seller finds nothing,
    # or seller A would learn which of their buyers' orders also hold seller B's items.
    s = shop
    assert _ids(client, ORDERS, s["seller_a"], seller_id=s["seller_b"]["id"]) == []
    assert _ids(client, ORDERS, s["seller_b"], seller_id=s["seller_a"]["id"]) == []
    assert _ids(client, ORDERS, s["seller_a"], seller_id=s["seller_a"]["id"]) == [s["both"], s["first"]]


@pytest.mark.parametrize("path", [ADMIN_ORDERS, ORDERS])
@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"state": "paid"}, "state"),
        ({"user": "x"}, "user"),  # a dependency's name is no filter
        ({"status": "shipped"}, "status"),
        ({"buyer_id": "nobody"}, "buyer_id"),
        ({"seller_id": "1"}, "seller_id"),
        ({"from": "last week"}, "from"),
        ({"to": "2026-13-01"}, "to"),
        ({"limit": "0"}, "limit"),
        ([("status", "paid"), ("status", "refunded")], "status"),  # not read as the last one alone
    ],
)
def test_an_unknown_filter_or_a_bad_value_is_a_400_naming_it(client, shop, path, params, field):
    r = client.get(path, params=params, headers=auth(shop["admin"]))
    assert_problem(r, 400, type_uri=problem_type("invalid-parameter"), fields={field})
