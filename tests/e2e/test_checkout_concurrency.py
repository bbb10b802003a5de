"""Checkout under concurrency, over HTTP against a live server on PostgreSQL: stock is never oversold, an
idempotency key charges once however many copies of a request race, and a cart is checked out once.

Buyers are inserted straight into the database with tokens signed by the server's MARKET_SECRET_KEY: fifty
sign-ups over HTTP would cost a hundred Argon2 hashes, and sign-up is not what these tests are about."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from argon2 import PasswordHasher

from market.adapters.security.tokens import JwtTokenService
from market.domain.users import Role, User
from tests.support.live_server import LiveServer, auth, register, start_server, stop_server
from tests.support.postgres import admin_execute, postgres_url

from .helpers import create_item, problem_type

SECRET_KEY = "e2e-concurrency-" + uuid.uuid4().hex
CHECKOUT = "/api/v1/checkout"
BODY = {"payment_method": {"type": "card", "token": "tok_visa"}}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, str]]:
    """A live server on a fresh PostgreSQL database, and that database's URL."""
    workdir: Path = tmp_path_factory.mktemp("concurrency")
    name = f"market_test_{uuid.uuid4().hex[:12]}"
    admin_execute(f'CREATE DATABASE "{name}"')
    try:
        live = start_server(postgres_url(name), workdir, "postgresql", {"MARKET_SECRET_KEY": SECRET_KEY})
        yield live, postgres_url(name)
        stop_server(live)
    finally:
        admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def seller(server) -> dict[str, str]:
    with server[0].client() as c:
        return register(c, role="seller")


@pytest.fixture(scope="module")
def password_hash() -> str:
    return PasswordHasher().hash("correct horse battery")


async def query(database_url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


async def new_buyers(database_url: str, n: int, password_hash: str) -> list[dict[str, str]]:
    """`n` buyer accounts, each with its bearer header."""
    tokens = JwtTokenService(SECRET_KEY, 3600)
    now = datetime.now(UTC)
    users = [
        User(
            str(uuid.uuid4()),
            f"buyer-{uuid.uuid4().hex[:10]}@example.com",
            "buyer",
            Role.BUYER,
            password_hash,
            now,
        )
        for _ in range(n)
    ]
    conn = await asyncpg.connect(database_url)
    try:
        await conn.executemany(
            "INSERT INTO users (id, email, display_name, role, password_hash, created_at)"
            " VALUES ($1, $2, $3, $4, $5, $6)",
            [
                (uuid.UUID(u.id), u.email, u.display_name, u.role.value, u.password_hash, u.created_at)
                for u in users
            ],
        )
    finally:
        await conn.close()
    return [{"id": u.id, "Authorization": f"Bearer {tokens.issue(u).token}"} for u in users]


def async_client(live: LiveServer) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=live.base_url, timeout=60, limits=httpx.Limits(max_connections=100))


async def fill_carts(client: httpx.AsyncClient, buyers: list[dict[str, str]], *item_ids: str) -> None:
    for item_id in item_ids:  # in this order: the lines keep it
        puts = await asyncio.gather(
            *(
                client.put(f"/api/v1/cart/items/{item_id}", json={"quantity": 1}, headers=auth(b))
                for b in buyers
            )
        )
        assert {r.status_code for r in puts} == {200}, [r.text for r in puts if r.status_code != 200]


async def test_fifty_buyers_racing_for_ten_units_get_exactly_ten_paid_orders(server, seller, password_hash):
    live, database_url = server
    with live.client() as c:
        item = create_item(c, seller, title="Limited mug", stock=10)
    buyers = await new_buyers(database_url, 50, password_hash)
    async with async_client(live) as client:
        await fill_carts(client, buyers, item["id"])
        responses = await asyncio.gather(
            *(
                client.post(CHECKOUT, json=BODY, headers={**auth(b), "Idempotency-Key": "race"})
                for b in buyers
            )
        )
        stock = (await client.get(f"/api/v1/items/{item['id']}")).json()["stock"]

    assert Counter(r.status_code for r in responses) == {201: 10, 409: 40}, [r.text for r in responses]
    assert {r.json()["status"] for r in responses if r.status_code == 201} == {"paid"}
    refused = [r.json() for r in responses if r.status_code == 409]
    assert {p["type"] for p in refused} == {problem_type("insufficient-stock")}
    # What the losers are told is what is left now, not what their cart showed before the race.
    assert {p["detail"] for p in refused} == {"'Limited mug' is out of stock."}
    assert stock == 0
    rows = await query(
        database_url,
        "SELECT o.status, count(*) AS orders, sum(ol.quantity) AS units FROM orders o"
        " JOIN order_lines ol ON ol.order_id = o.id WHERE ol.item_id = $1 GROUP BY o.status",
        uuid.UUID(item["id"]),
    )
    assert [(r["status"], r["orders"], r["units"]) for r in rows] == [("paid", 10, 10)]
    charges = await query(
        database_url,
        "SELECT count(*) AS n FROM sandbox_charges sc JOIN order_lines ol ON ol.order_id = sc.order_id"
        " WHERE ol.item_id = $1",
        uuid.UUID(item["id"]),
    )
    assert charges[0]["n"] == 10


async def test_twenty_copies_of_one_checkout_with_one_key_make_one_order_and_one_charge(
    server, seller, password_hash
):
    live, database_url = server
    with live.client() as c:
        item = create_item(c, seller, stock=5)
    [buyer] = await new_buyers(database_url, 1, password_hash)
    headers = {**auth(buyer), "Idempotency-Key": "same-" + uuid.uuid4().hex}
    async with async_client(live) as client:
        await fill_carts(client, [buyer], item["id"])
        responses = await asyncio.gather(
            *(client.post(CHECKOUT, json=BODY, headers=headers) for _ in range(20))
        )

    originals = [r for r in responses if "idempotent-replayed" not in r.headers and r.status_code == 201]
    assert len(originals) == 1, [(r.status_code, r.text) for r in responses]
    [original] = originals
    assert original.json()["status"] == "paid"
    for r in responses:
        if r is original:
            continue
        if r.status_code == 409:
            assert r.json()["type"] == problem_type("idempotent-request-in-progress"), r.text
        else:
            assert r.status_code == 201 and r.headers["idempotent-replayed"] == "true", r.text
            assert r.content == original.content
    orders = await query(database_url, "SELECT id FROM orders WHERE buyer_id = $1", uuid.UUID(buyer["id"]))
    assert [str(o["id"]) for o in orders] == [original.json()["id"]]
    charges = await query(
        database_url, "SELECT count(*) AS n FROM sandbox_charges WHERE order_id = $1", orders[0]["id"]
    )
    assert charges[0]["n"] == 1


async def test_a_cart_checked_out_twenty_times_at_once_with_different_keys_is_ordered_once(
    server, seller, password_hash
):
    live, database_url = server
    with live.client() as c:
        item = create_item(c, seller, stock=5)
    [buyer] = await new_buyers(database_url, 1, password_hash)
    async with async_client(live) as client:
        await fill_carts(client, [buyer], item["id"])
        responses = await asyncio.gather(
            *(
                client.post(CHECKOUT, json=BODY, headers={**auth(buyer), "Idempotency-Key": f"key-{n}"})
                for n in range(20)
            )
        )
    assert Counter(r.status_code for r in responses) == {201: 1, 409: 19}, [r.text for r in responses]
    refused = {r.json()["type"] for r in responses if r.status_code == 409}
    assert refused <= {problem_type("checkout-in-progress"), problem_type("empty-cart")}, refused
    orders = await query(
        database_url, "SELECT count(*) AS n FROM orders WHERE buyer_id = $1", uuid.UUID(buyer["id"])
    )
    assert orders[0]["n"] == 1


async def test_buyers_carting_two_items_in_opposite_orders_all_check_out(server, seller, password_hash):
    # Reservations lock item rows: taken in cart order, two checkouts could each hold the row the other needs.
    live, database_url = server
    with live.client() as c:
        mug, hat = create_item(c, seller, stock=100), create_item(c, seller, title="Hat", stock=100)
    buyers = await new_buyers(database_url, 30, password_hash)
    async with async_client(live) as client:
        await fill_carts(client, buyers[:15], mug["id"], hat["id"])
        await fill_carts(client, buyers[15:], hat["id"], mug["id"])
        responses = await asyncio.gather(
            *(client.post(CHECKOUT, json=BODY, headers={**auth(b), "Idempotency-Key": "k"}) for b in buyers)
        )
        stocks = [(await client.get(f"/api/v1/items/{i['id']}")).json()["stock"] for i in (mug, hat)]
    assert Counter(r.status_code for r in responses) == {201: 30}, [
        r.text for r in responses if r.status_code != 201
    ]
    assert stocks == [70, 70]


async def test_buyers_changing_their_carts_while_their_checkouts_are_declined_meet_no_server_error(
    server, seller, password_hash
):
    # A declined checkout releases its cart claim and its stock while the buyer edits the same cart: the cart
    # row is locked before its lines on both sides (adapters/db/commerce.py), so neither deadlocks the other.
    live, database_url = server
    with live.client() as c:
        mug, hat = create_item(c, seller, stock=100), create_item(c, seller, title="Hat", stock=100)
    buyers = await new_buyers(database_url, 10, password_hash)
    declined = {"payment_method": {"type": "card", "token": "tok_chargeDeclined"}}
    checkouts, edits = Counter(), Counter()
    async with async_client(live) as client:
        await fill_carts(client, buyers, mug["id"])
        for round_ in range(5):
            quantity = round_ % 2  # the hat line comes and goes
            responses = await asyncio.gather(
                *(
                    request
                    for b in buyers
                    for request in (
                        client.post(
                            CHECKOUT, json=declined, headers={**auth(b), "Idempotency-Key": f"r{round_}"}
                        ),
                        client.put(
                            f"/api/v1/cart/items/{hat['id']}", json={"quantity": quantity}, headers=auth(b)
                        ),
                    )
                )
            )
            checkouts.update(r.status_code for r in responses[0::2])
            edits.update(r.status_code for r in responses[1::2])
        stocks = [(await client.get(f"/api/v1/items/{i['id']}")).json()["stock"] for i in (mug, hat)]
    assert set(checkouts) <= {402, 409} and checkouts[402] > 0, checkouts
    assert set(edits) <= {200, 409} and edits[200] > 0, edits
    assert stocks == [100, 100]  # every declined checkout gave its stock back
    failed = await query(
        database_url,
        "SELECT status, count(*) AS n FROM orders WHERE buyer_id = ANY($1::uuid[]) GROUP BY status",
        [uuid.UUID(b["id"]) for b in buyers],
    )
    assert {row["status"] for row in failed} == {"payment_failed"}


async def test_a_seller_editing_an_item_while_buyers_check_out_never_brings_reserved_stock_back(
    server, seller, password_hash
):
    # An edit stores the whole item, its stock included: read without its row locked, a reservation
    # committed in between was overwritten by the stock read before it, and the units were sold again.
    live, database_url = server
    with live.client() as c:
        item = create_item(c, seller, title="Edited mug", stock=10)
    buyers = await new_buyers(database_url, 30, password_hash)
    async with async_client(live) as client:
        await fill_carts(client, buyers, item["id"])
        checkouts = [
            client.post(CHECKOUT, json=BODY, headers={**auth(b), "Idempotency-Key": "edit-race"})
            for b in buyers
        ]
        edits = [
            client.patch(f"/api/v1/items/{item['id']}", json={"price_cents": 2000 + n}, headers=auth(seller))
            for n in range(30)
        ]
        responses = await asyncio.gather(*(r for pair in zip(checkouts, edits, strict=True) for r in pair))
    assert Counter(r.status_code for r in responses[1::2]) == {200: 30}
    assert Counter(r.status_code for r in responses[0::2]) == {201: 10, 409: 20}
    rows = await query(
        database_url,
        "SELECT (SELECT stock FROM items WHERE id = $1) AS stock,"
        " (SELECT coalesce(sum(ol.quantity), 0) FROM order_lines ol WHERE ol.item_id = $1) AS units",
        uuid.UUID(item["id"]),
    )
    assert (rows[0]["stock"], rows[0]["units"]) == (0, 10)


async def test_items_in_two_currencies_put_into_one_cart_at_once_never_mix(server, seller, password_hash):
    # Each change checked the cart as it was before the others committed: together they mixed currencies.
    live, database_url = server
    with live.client() as c:
        items = [create_item(c, seller, title=f"Mug {n}", currency=("EUR", "USD")[n % 2]) for n in range(6)]
    buyers = await new_buyers(database_url, 10, password_hash)
    async with async_client(live) as client:
        responses = await asyncio.gather(
            *(
                client.put(f"/api/v1/cart/items/{item['id']}", json={"quantity": 1}, headers=auth(b))
                for b in buyers
                for item in items
            )
        )
        carts = [(await client.get("/api/v1/cart", headers=auth(b))).json() for b in buyers]
    assert set(Counter(r.status_code for r in responses)) <= {200, 409}
    refused = {r.json()["type"] for r in responses if r.status_code == 409}
    assert refused <= {problem_type("currency-mismatch")}, refused
    assert all(cart["currency"] in ("EUR", "USD") and len(cart["lines"]) == 3 for cart in carts), carts
