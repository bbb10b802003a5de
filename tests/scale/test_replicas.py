"""Three replicas (`market serve --workers 2` each) on one PostgreSQL and one Redis, behind HAProxy: what must
hold across processes that share nothing but the database and Redis. r1 and r2 also share a var folder (two
servers on one machine), r3 has its own (another machine); backups go to a folder all three see.

Tests run in file order on one topology; the last one kills a replica."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from argon2 import PasswordHasher

from market.adapters.security.tokens import JwtTokenService
from market.domain.users import Role, User
from tests.e2e.helpers import create_item
from tests.support.live_server import auth, register
from tests.support.servers.webhook_receiver import WebhookReceiver
from tests.support.topology import REPLICA_HEADER, Topology

pytestmark = pytest.mark.timeout(240)

CHECKOUT = "/api/v1/checkout"
PAID = {"payment_method": {"type": "card", "token": "tok_visa"}}
GATEWAY_TIMEOUT = {"payment_method": {"type": "card", "token": "tok_gatewayTimeout"}}


# --- helpers ---------------------------------------------------------------------------------------------


async def query(database_url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


async def new_buyers(topology: Topology, n: int) -> list[dict[str, str]]:
    """`n` buyers inserted straight into the database, with tokens signed by the replicas' shared key (fifty
    sign-ups over HTTP would be a hundred Argon2 hashes, and sign-up is not what is tested here)."""
    tokens = JwtTokenService(topology.env["MARKET_SECRET_KEY"], 3600)
    password_hash = PasswordHasher().hash("correct horse battery")
    now = datetime.now(UTC)
    users = [
        User(str(uuid.uuid4()), f"b-{uuid.uuid4().hex[:10]}@example.com", "b", Role.BUYER, password_hash, now)
        for _ in range(n)
    ]
    conn = await asyncpg.connect(topology.database_url)
    try:
        await conn.executemany(
            "INSERT INTO users (id, email, display_name, role, password_hash, created_at)"
            " VALUES ($1, $2, $3, $4, $5, $6)",
            [(uuid.UUID(u.id), u.email, u.display_name, u.role.value, u.password_hash, now) for u in users],
        )
    finally:
        await conn.close()
    return [{"id": u.id, "Authorization": f"Bearer {tokens.issue(u).token}"} for u in users]


async def fill_carts(client: httpx.AsyncClient, buyers: list[dict[str, str]], item_id: str) -> None:
    puts = await asyncio.gather(
        *(client.put(f"/api/v1/cart/items/{item_id}", json={"quantity": 1}, headers=auth(b)) for b in buyers)
    )
    assert {r.status_code for r in puts} == {200}, [r.text for r in puts if r.status_code != 200]


def fill_cart(client: httpx.Client, buyer: dict[str, str], item_id: str) -> None:
    r = client.put(f"/api/v1/cart/items/{item_id}", json={"quantity": 1}, headers=auth(buyer))
    assert r.status_code == 200, r.text


def checkout(client: httpx.Client, buyer: dict[str, str], body: dict[str, Any]) -> httpx.Response:
    return client.post(CHECKOUT, json=body, headers={**auth(buyer), "Idempotency-Key": str(uuid.uuid4())})


def wait_until(condition: Any, timeout: float, message: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, message
        time.sleep(0.2)
    return result


# --- the balancer --------------------------------------------------------------------------------------------


def test_the_balancer_spreads_requests_over_every_replica(topology: Topology):
    with topology.client() as client:
        served = Counter(client.get("/health/live").headers[REPLICA_HEADER] for _ in range(30))
    assert set(served) == {"r1", "r2", "r3"}, served


# --- idempotency and stock, across replicas ----------------------------------------------------------------


async def test_one_idempotency_key_sent_to_every_replica_makes_one_order_and_one_charge(topology: Topology):
    with topology.client() as c:
        item = create_item(c, register(c, role="seller"), stock=5)
    [buyer] = await new_buyers(topology, 1)
    headers = {**auth(buyer), "Idempotency-Key": "same-" + uuid.uuid4().hex}
    async with topology.async_client() as client:
        await fill_carts(client, [buyer], item["id"])
        responses = await asyncio.gather(
            *(client.post(CHECKOUT, json=PAID, headers=headers) for _ in range(24))
        )

    assert {r.headers[REPLICA_HEADER] for r in responses} == {"r1", "r2", "r3"}
    originals = [r for r in responses if r.status_code == 201 and "idempotent-replayed" not in r.headers]
    assert len(originals) == 1, [(r.status_code, r.text) for r in responses]
    for r in responses:
        if r is not originals[0]:
            assert r.status_code in (201, 409), r.text
            if r.status_code == 201:
                assert r.content == originals[0].content
    orders = await query(
        topology.database_url, "SELECT id FROM orders WHERE buyer_id = $1", uuid.UUID(buyer["id"])
    )
    assert [str(o["id"]) for o in orders] == [originals[0].json()["id"]]
    [charges] = await query(
        topology.database_url,
        "SELECT count(*) AS n FROM sandbox_charges WHERE order_id = $1",
        orders[0]["id"],
    )
    assert charges["n"] == 1


async def test_fifty_buyers_on_ten_units_across_replicas_pay_exactly_ten(topology: Topology):
    with topology.client() as c:
        item = create_item(c, register(c, role="seller"), stock=10)
    buyers = await new_buyers(topology, 50)
    async with topology.async_client() as client:
        await fill_carts(client, buyers, item["id"])
        responses = await asyncio.gather(
            *(
                client.post(CHECKOUT, json=PAID, headers={**auth(b), "Idempotency-Key": "race"})
                for b in buyers
            )
        )
    statuses = Counter(r.status_code for r in responses)
    assert statuses[201] == 10, statuses
    assert set(statuses) <= {201, 409}, [r.text for r in responses if r.status_code not in (201, 409)]
    assert len({r.headers[REPLICA_HEADER] for r in responses if r.status_code == 201}) >= 2
    [row] = await query(
        topology.database_url,
        "SELECT count(*) AS paid, (SELECT stock FROM items WHERE id = $1) AS stock FROM orders o"
        " JOIN order_lines l ON l.order_id = o.id WHERE l.item_id = $1 AND o.status = 'paid'",
        uuid.UUID(item["id"]),
    )
    assert (row["paid"], row["stock"]) == (10, 0)


# --- webhooks: each order.paid once ----------------------------------------------------------------------


async def test_each_order_paid_is_delivered_once_whichever_replica_took_the_order(topology: Topology):
    receiver = WebhookReceiver().start()
    try:
        with topology.client() as c:
            seller = register(c, role="seller")
            item = create_item(c, seller, stock=100)
            r = c.put("/api/v1/seller/webhook", json={"url": receiver.url}, headers=auth(seller))
            assert r.status_code == 200, r.text
        buyers = await new_buyers(topology, 30)
        async with topology.async_client() as client:
            await fill_carts(client, buyers, item["id"])
            responses = await asyncio.gather(
                *(
                    client.post(CHECKOUT, json=PAID, headers={**auth(b), "Idempotency-Key": "k"})
                    for b in buyers
                )
            )
        assert [r.status_code for r in responses] == [201] * 30, [r.text for r in responses]
        orders = {r.json()["id"] for r in responses}

        def paid_events() -> list[dict[str, Any]]:
            return [
                {**json.loads(req.body), "webhook_id": req.headers["webhook-id"]}
                for req in receiver.received()
                if json.loads(req.body).get("type") == "order.paid"
            ]

        wait_until(lambda: len(paid_events()) >= 30, 30, "not every order.paid arrived")
        await asyncio.sleep(2)  # a replica that double-sends would do it within its next poll
        events = paid_events()
        per_id = Counter(e["webhook_id"] for e in events)
        assert len(events) == 30 and set(per_id.values()) == {1}, per_id
        assert {e["data"]["order_id"] for e in events} == orders
    finally:
        receiver.stop()


# --- /metrics: each replica its own work -------------------------------------------------------------------

_ITEM_GETS = re.compile(
    r'^http_server_request_duration_seconds_count\{[^}]*http_request_method="GET"[^}]*'
    r'http_route="/api/v1/items/\{[a-z_]+\}"[^}]*\} (\d+(?:\.\d+)?)$',  # prometheus_client writes 10.0
    re.M,
)


def item_gets(base_url: str) -> int:
    text = httpx.get(base_url + "/metrics", timeout=10).text
    return sum(int(float(n)) for n in _ITEM_GETS.findall(text))


def test_each_replicas_metrics_count_its_own_requests_and_the_replicas_add_up(topology: Topology):
    before = {name: item_gets(r.base_url) for name, r in topology.replicas.items()}
    with topology.client() as c:
        item = create_item(c, register(c, role="seller"))
        served = Counter(c.get(f"/api/v1/items/{item['id']}").headers[REPLICA_HEADER] for _ in range(30))
    assert set(served) == {"r1", "r2", "r3"}

    def counted() -> dict[str, int] | None:
        # Each replica's /metrics: the answering worker's live figures plus its sibling's latest snapshot.
        now = {name: item_gets(r.base_url) - before[name] for name, r in topology.replicas.items()}
        return now if now == dict(served) else None

    wait_until(counted, 20, f"replicas never reported their own requests {dict(served)}")


# --- alerts: one notification per transition ---------------------------------------------------------------

_MESSAGE = re.compile(r"^\[(FIRING|RESOLVED)\] (\w+) ")


def announced(slack: WebhookReceiver, rule: str) -> list[str]:
    out = []
    for request in slack.received():
        match = _MESSAGE.match(json.loads(request.body)["text"])
        if match and match[2] == rule:
            out.append(match[1])
    return out


def test_a_payment_failure_alert_is_announced_once_by_all_replicas_together(
    topology: Topology, slack: WebhookReceiver
):
    with topology.client() as c:
        item = create_item(c, register(c, role="seller"), stock=10_000, price_cents=500)
        buyer = register(c)
        fill_cart(c, buyer, item["id"])
        deadline = time.monotonic() + 180
        # Gateway timeouts are payment-system failures (declines never fire); at least 10 attempts and 3 failures.
        while announced(slack, "payment_failures") != ["FIRING"]:  # every replica sees them
            assert time.monotonic() < deadline, announced(slack, "payment_failures")
            assert checkout(c, buyer, GATEWAY_TIMEOUT).status_code == 503
            time.sleep(0.2)
        while announced(slack, "payment_failures") != ["FIRING", "RESOLVED"]:
            assert time.monotonic() < deadline, announced(slack, "payment_failures")
            assert checkout(c, buyer, PAID).status_code == 201
            fill_cart(c, buyer, item["id"])
    time.sleep(3)  # three evaluations more on every worker of every replica
    assert announced(slack, "payment_failures") == ["FIRING", "RESOLVED"]


# --- backups: one per slot -------------------------------------------------------------------------------


def test_the_scheduled_backup_is_taken_once_per_slot_by_one_replica(
    topology: Topology, backup_slot: datetime
):
    backups = topology.workdir / "backups"

    def archives() -> list[Path]:
        return sorted(backups.glob("market-*.tar.gz")) if backups.is_dir() else []

    wait_seconds = (backup_slot - datetime.now(UTC)).total_seconds() + 60
    wait_until(archives, max(wait_seconds, 5), f"no backup by {backup_slot:%H:%M} UTC")
    time.sleep(3)  # a second replica taking the same slot would have finished its dump by now
    assert len(archives()) == 1, archives()
    assert archives()[0].name.startswith(f"market-{backup_slot:%Y%m%dT%H%M}")


# --- a replica killed mid-traffic (last: it leaves two) ----------------------------------------------------


async def test_a_replica_killed_mid_traffic_loses_no_accepted_order_and_is_routed_around(topology: Topology):
    with topology.client() as c:
        item = create_item(c, register(c, role="seller"), stock=1000)
    buyers = await new_buyers(topology, 60)
    outcomes: dict[str, httpx.Response | None] = {}

    async with topology.async_client() as client:
        await fill_carts(client, buyers, item["id"])

        async def buy(buyer: dict[str, str], delay: float) -> None:
            await asyncio.sleep(delay)
            headers = {**auth(buyer), "Idempotency-Key": "k-" + buyer["id"]}
            for _ in range(5):  # what a client does on a 5xx or a dropped connection: the same key again
                try:
                    r = await client.post(CHECKOUT, json=PAID, headers=headers)
                except httpx.TransportError:
                    await asyncio.sleep(0.3)
                    continue
                outcomes[buyer["id"]] = r
                if r.status_code < 500:
                    return
                await asyncio.sleep(0.3)

        traffic = [asyncio.create_task(buy(b, n * 0.03)) for n, b in enumerate(buyers)]
        await asyncio.sleep(0.6)
        await asyncio.to_thread(topology.kill, "r2")
        await asyncio.gather(*traffic)

    accepted = {b: r.json()["id"] for b, r in outcomes.items() if r is not None and r.status_code == 201}
    others = Counter(r.status_code if r is not None else None for r in outcomes.values() if r is not None)
    # Most buyers are served; the few whose request died with r2 find their key in progress (409) until
    # it is taken over, and the reconciler settles their payment.
    assert len(accepted) >= 50, others
    assert set(others) <= {201, 409}, others
    rows = await query(
        topology.database_url,
        "SELECT o.id, o.buyer_id, o.status, (SELECT count(*) FROM sandbox_charges c WHERE c.order_id = o.id)"
        " AS charges FROM orders o JOIN order_lines l ON l.order_id = o.id WHERE l.item_id = $1",
        uuid.UUID(item["id"]),
    )
    by_id = {str(r["id"]): r for r in rows}
    for buyer_id, order_id in accepted.items():
        assert by_id[order_id]["status"] == "paid" and str(by_id[order_id]["buyer_id"]) == buyer_id
    assert Counter(str(r["buyer_id"]) for r in rows).most_common(1)[0][1] == 1  # nobody ordered twice
    assert all(r["charges"] <= 1 for r in rows)

    with topology.client() as c:
        served = Counter(c.get("/health/ready").headers[REPLICA_HEADER] for _ in range(20))
    assert set(served) == {"r1", "r3"}, served
