"""What one checkout writes on PostgreSQL, per table: rows inserted, updated and deleted, and transactions
committed — the "writes per checkout" line of docs/CAPACITY.md.

Seeds a small database, fills `--buyers` carts (as checkout_throughput.py does), reads PostgreSQL's own
counters (pg_stat_user_tables, pg_stat_database), runs the checkouts one at a time with `tok_visa`, waits for
the server's backends to flush their statistics, and prints the difference divided by the number of paid
orders; then the statements (round trips but BEGIN/COMMIT) per order, by operation and table, from the server's
own `db.client.operation.duration` counts on /metrics. The reconciler is held off; the webhook outbox is written only for sellers with an endpoint (none
here: add one row per paid order and seller with an endpoint). Nothing is asserted.

    .venv/bin/python benchmarks/checkout_writes.py [--buyers 200]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import time
import uuid
from collections import Counter
from typing import Any

import asyncpg
import httpx
from _harness import add_database_arguments, market_server, print_environment, seeded_database, workdir
from checkout_throughput import SECRET, _prepare, _token

FLUSH_WAIT_S = 12
"""PostgreSQL 15 backends publish their table statistics when idle for 10 s at the latest."""


async def _counters(url: str) -> tuple[dict[str, tuple[int, int, int]], int]:
    connection = await asyncpg.connect(url)
    try:
        tables = await connection.fetch(
            "SELECT relname, n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_user_tables"
        )
        commits = await connection.fetchval(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        )
    finally:
        await connection.close()
    return {r["relname"]: (r["n_tup_ins"], r["n_tup_upd"], r["n_tup_del"]) for r in tables}, commits


async def _checkouts(base: str, buyers: list[str]) -> int:
    paid = 0
    statuses: Counter[int] = Counter()
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        for buyer in buyers:
            r = await client.post(
                "/api/v1/checkout",
                json={"payment_method": {"type": "card", "token": "tok_visa"}},
                headers={"Authorization": f"Bearer {_token(buyer)}", "Idempotency-Key": str(uuid.uuid4())},
            )
            paid += r.status_code == 201
            statuses[r.status_code] += 1
    print(f"checkout outcomes: {dict(statuses)}")
    return paid


def _statements(base: str) -> Counter[str]:
    """Statements the server has run so far, by operation and table, from its own
    `db.client.operation.duration` histogram on /metrics (BEGIN and COMMIT are not statements there)."""
    counts: Counter[str] = Counter()
    text = httpx.get(base + "/metrics", timeout=30).text
    for line in text.splitlines():
        if not line.startswith("db_client_operation_duration_seconds_count{"):
            continue
        labels, _, value = line.rpartition(" ")
        fields = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        counts[f"{fields.get('db_operation_name', '?')} {fields.get('db_collection_name', '')}".strip()] += (
            int(float(value))
        )
    return counts


def _report_statements(before: Counter[str], after: Counter[str], paid: int) -> None:
    delta = {name: after[name] - before.get(name, 0) for name in after}
    print(f"{'statement':<34} {'per order':>10}")
    for name, count in sorted(delta.items()):
        if count:
            print(f"{name:<34} {count / paid:>10.2f}")
    print(f"{'statements per order (no BEGIN/COMMIT)':<34} {sum(delta.values()) / paid:>10.2f}")


def _report(before: Any, after: Any, paid: int) -> None:
    (tables_before, commits_before), (tables_after, commits_after) = before, after
    print(f"paid orders: {paid}")
    print(f"{'table':<28} {'ins/order':>10} {'upd/order':>10} {'del/order':>10}")
    total = [0.0, 0.0, 0.0]
    for name in sorted(tables_after):
        was = tables_before.get(name, (0, 0, 0))
        delta = [(now - then) / paid for now, then in zip(tables_after[name], was, strict=True)]
        if any(delta):
            total = [t + d for t, d in zip(total, delta, strict=True)]
            print(f"{name:<28} {delta[0]:>10.2f} {delta[1]:>10.2f} {delta[2]:>10.2f}")
    print(f"{'total':<28} {total[0]:>10.2f} {total[1]:>10.2f} {total[2]:>10.2f}")
    print(
        f"transactions committed per order (any statement, reads too): {(commits_after - commits_before) / paid:.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_database_arguments(parser)
    parser.add_argument("--buyers", type=int, default=200, help="checkouts to run (one per buyer)")
    parser.set_defaults(items=200, sellers=5)
    args = parser.parse_args()
    print_environment()
    with workdir() as cwd, seeded_database(args, cwd) as url:
        server = market_server(
            "market",
            url,
            cwd,
            MARKET_SECRET_KEY=SECRET,
            MARKET_RECONCILE_INTERVAL="3600",
            MARKET_RATE_LIMITS="off",
        )
        server.start()
        try:
            buyers = asyncio.run(_prepare(url, server.base_url, args.buyers, spread=1))
            time.sleep(FLUSH_WAIT_S)
            before = asyncio.run(_counters(url))
            statements_before = _statements(server.base_url)
            paid = asyncio.run(_checkouts(server.base_url, buyers))
            statements_after = _statements(server.base_url)
            time.sleep(FLUSH_WAIT_S)
            after = asyncio.run(_counters(url))
        finally:
            server.stop()
    _report(before, after, max(paid, 1))
    _report_statements(statements_before, statements_after, max(paid, 1))


if __name__ == "__main__":
    main()
