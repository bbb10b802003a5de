"""Analytics at volume on PostgreSQL: `--events` analytics events spread over `--days` (a year by default),
loaded with COPY month by month into the monthly partitions (m0006), then the rollups of every closed day
(m0010, rollups.py: the background pass, run until it has nothing left, timed), then the reports over the last
30 days and the last day, each timed from the raw events alone and with the rollups, and the cost of writing one
more event. Run it at 1 M, 10 M, 100 M to see whether report times stay flat as the table grows (check the disk
first: about 400 MiB per million events with the indexes).

The events are simple simulated sessions (a search half of the time, 1 to 8 item views, a cart addition in one
session out of ten, a checkout for four carts out of ten, 90 % of payments succeeding), generated in time order
day by day, never all in memory. The generator's sellers and items are inserted as users and items (no orders:
the seller dashboard is timed for the seller of the most viewed item and for a seller of middling traffic, its
conversion joins finding no order lines). Nothing is asserted.

    .venv/bin/python benchmarks/analytics_volume.py --events 1000000
    .venv/bin/python benchmarks/analytics_volume.py --events 10000000 --keep   # then --database-url to re-time
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from _harness import add_connection_arguments, empty_database, print_environment

from market.adapters.db.analytics import SqlAnalyticsLog, SqlAnalyticsReports
from market.adapters.db.database import Database
from market.config import DatabaseSettings, DatabaseURL
from market.domain import events as domain_events
from market.domain.analytics import Period
from market.telemetry import request_context

COLUMNS = (
    "occurred_at",
    "kind",
    "session_id",
    "user_id",
    "trace_id",
    "item_id",
    "seller_id",
    "order_id",
    "query",
    "result_count",
    "quantity",
    "amount_cents",
    "currency",
    "method",
    "reason",
)
CHUNK = 200_000


class Generator:
    def __init__(self, seed: int, items: int = 5000, sellers: int = 300, queries: int = 5000) -> None:
        self.rng = random.Random(seed)
        self.sellers = [uuid.UUID(int=self.rng.getrandbits(128), version=4) for _ in range(sellers)]
        self.items = [
            (uuid.UUID(int=self.rng.getrandbits(128), version=4), self.sellers[n % sellers])
            for n in range(items)
        ]
        self.queries = [f"query {n}" for n in range(queries)]
        self.sessions = 0

    def day(self, start: datetime, n_events: int) -> list[tuple[Any, ...]]:
        """About `n_events` events of sessions starting on the day at `start`, in time order."""
        out: list[tuple[Any, ...]] = []
        while len(out) < n_events:
            self._session(start, out)
        out.sort(key=lambda row: row[0])
        return out

    def _session(self, start: datetime, out: list[tuple[Any, ...]]) -> None:
        rng = self.rng
        self.sessions += 1
        session = f"s{self.sessions:012d}"
        user = uuid.UUID(int=rng.getrandbits(128), version=4) if rng.random() < 0.3 else None
        t = start + timedelta(seconds=rng.random() * 86_000)

        def add(kind: str, **values: Any) -> None:
            nonlocal t
            t += timedelta(seconds=rng.random() * 40)
            out.append((t, kind, session, user, None, *(values.get(c) for c in COLUMNS[5:])))

        if rng.random() < 0.5:
            query = self.queries[min(int(rng.paretovariate(1.2)) - 1, len(self.queries) - 1)]
            add("search", query=query, result_count=0 if rng.random() < 0.09 else rng.randrange(1, 50))
        for _ in range(rng.randrange(1, 9)):
            item, seller = self.items[min(int(rng.paretovariate(1.1)) - 1, len(self.items) - 1)]
            add("item_viewed", item_id=item, seller_id=seller)
        if rng.random() < 0.1:
            item, seller = self.items[rng.randrange(len(self.items))]
            add("cart_add", item_id=item, seller_id=seller, quantity=1)
            if user is not None and rng.random() < 0.4:
                order, amount = uuid.uuid4(), rng.randrange(500, 20_000)
                add("checkout_started", order_id=order, amount_cents=amount, currency="EUR")
                if rng.random() < 0.9:
                    add(
                        "payment_succeeded",
                        order_id=order,
                        amount_cents=amount,
                        currency="EUR",
                        method="card",
                    )
                    add("order_paid", order_id=order, amount_cents=amount, currency="EUR")
                else:
                    add(
                        "payment_declined", order_id=order, amount_cents=amount, currency="EUR", method="card"
                    )


def chunks(rows: list[tuple[Any, ...]]) -> Iterator[list[tuple[Any, ...]]]:
    for start in range(0, len(rows), CHUNK):
        yield rows[start : start + CHUNK]


async def load(db: Database, events: int, days: int, end: datetime, seed: int) -> tuple[int, float]:
    reports = SqlAnalyticsReports(db)
    first = end - timedelta(days=days)
    month = first.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    while month <= end:  # the months before the service's own (the migration made the current ones)
        await reports.ensure_partitions(month, months_ahead=0)
        month = (month + timedelta(days=32)).replace(day=1)
    generator, written, copy_s = Generator(seed), 0, 0.0
    per_day = events / days
    for n in range(days):
        rows = generator.day(first + timedelta(days=n), round(per_day * (n + 1)) - written)
        started = time.perf_counter()
        for chunk in chunks(rows):
            await db.copy_records("analytics_events", COLUMNS, chunk)
        copy_s += time.perf_counter() - started
        written += len(rows)
    started = time.perf_counter()
    await db.vacuum_analyze("analytics_events")
    print(f"  VACUUM ANALYZE {time.perf_counter() - started:.1f} s")
    return written, copy_s


async def add_sellers_and_items(db: Database, seed: int) -> tuple[str, str]:
    """The generator's sellers and items as users and items (the seller dashboard joins items), unless there;
    returns (the seller of the most viewed item, a seller of middling traffic)."""
    generator = Generator(seed)
    top, middling = str(generator.items[0][1]), str(generator.items[40][1])
    [row] = await db.fetch("SELECT count(*) AS n FROM items")
    if int(row["n"]):
        return top, middling
    created = datetime(2026, 1, 1, tzinfo=UTC)
    await db.copy_records(
        "users",
        ("id", "email", "display_name", "role", "password_hash", "created_at"),
        [
            (seller, f"seller{n}@bench.example", f"Seller {n}", "seller", "x", created)
            for n, seller in enumerate(generator.sellers)
        ],
    )
    await db.copy_records(
        "items",
        (
            "id",
            "seller_id",
            "title",
            "description",
            "price_cents",
            "currency",
            "stock",
            "category",
            "status",
            "created_at",
            "updated_at",
        ),
        [
            (item, seller, f"Item {n}", "", 1000, "EUR", 10, "bench", "active", created, created)
            for n, (item, seller) in enumerate(generator.items)
        ],
    )
    return top, middling


async def roll_up_all(db: Database, now: datetime) -> None:
    """The background pass, run until it has nothing left (a backfill of every closed day), timed."""
    rollups, days, started = SqlAnalyticsReports(db).rollups, 0, time.perf_counter()
    while done := await rollups.roll_up(now):
        days += len(done)
    took = time.perf_counter() - started
    if days:
        print(f"rollups: {days} days rolled up in {took:.1f} s ({took / days * 1e3:.0f} ms a day)")
    sizes = []
    for table in ("analytics_session_days", "analytics_search_days", "analytics_view_days"):
        [row] = await db.fetch(f"SELECT count(*) AS n, pg_total_relation_size('{table}') AS b FROM {table}")
        sizes.append(f"{table} {int(row['n'])} rows {int(row['b']) / 2**20:.0f} MiB")
    print("  " + "; ".join(sizes))


async def time_reports(db: Database, now: datetime, runs: int, sellers: tuple[str, str]) -> None:
    for label, period in (
        ("30 days", Period(now - timedelta(days=30), now)),
        ("1 day", Period(now - timedelta(days=1), now)),
    ):
        for source in ("raw", "rollups"):
            reports = SqlAnalyticsReports(db, use_rollups=source == "rollups")
            calls: dict[str, Callable[[Period], Awaitable[Any]]] = {
                "funnel": reports.funnel,
                "search": reports.search,
                "sessions": reports.sessions,
                "seller top": partial(reports.seller_dashboard, sellers[0]),
                "seller mid": partial(reports.seller_dashboard, sellers[1]),
            }
            if source == "raw":  # these two read no rollup
                calls["payments"] = reports.payments
                calls["carts"] = lambda p, reports=reports: reports.carts(p, timedelta(days=1), now)
            for name, call in calls.items():
                for _ in range(2):
                    await call(period)
                seconds = []
                for _ in range(runs):
                    started = time.perf_counter()
                    await call(period)
                    seconds.append(time.perf_counter() - started)
                print(
                    f"  {name:<10} {label:<7} {source:<7} median {statistics.median(seconds):7.3f} s"
                    f"  max {max(seconds):7.3f} s"
                )


async def record_cost(db: Database, now: datetime, n: int = 500) -> None:
    log, took = SqlAnalyticsLog(db), []
    for i in range(n):
        token = request_context.begin(f"bench-{i}", None)
        try:
            started = time.perf_counter()
            await log.record([domain_events.SearchPerformed("bench", 1)], now)
            took.append(time.perf_counter() - started)
        finally:
            request_context.end(token)
    await db.fetch("DELETE FROM analytics_events WHERE query = 'bench' AND occurred_at = {}", now)
    took.sort()
    print(f"  record() one event: p50 {took[n // 2] * 1e3:.2f} ms  p95 {took[n * 95 // 100] * 1e3:.2f} ms")


async def sizes(db: Database) -> None:
    rows = await db.fetch(
        "SELECT count(*) AS partitions, sum(pg_table_size(c.oid)) AS heap, sum(pg_indexes_size(c.oid)) AS idx"
        " FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'analytics_events'::regclass"
    )
    row = rows[0]
    print(
        f"  {row['partitions']} partitions; table {int(row['heap']) / 2**20:.0f} MiB,"
        f" indexes {int(row['idx']) / 2**20:.0f} MiB"
    )


async def run(args: argparse.Namespace, url: str) -> None:
    db = Database(DatabaseSettings(DatabaseURL.parse(url)))
    await db.start()
    try:
        now = datetime.now(UTC)
        await db.migrate()  # an earlier --keep run's database gets the migrations since (the rollups' tables)
        if not args.database_url:
            started = time.perf_counter()
            written, copy_s = await load(db, args.events, args.days, now, args.seed)
            print(
                f"load: {written} events over {args.days} days in {time.perf_counter() - started:.1f} s"
                f" (COPY {copy_s:.1f} s, the rest generating them)"
            )
        [row] = await db.fetch("SELECT count(*) AS n, max(occurred_at) AS last FROM analytics_events")
        print(f"table: {row['n']} events")
        await sizes(db)
        sellers = await add_sellers_and_items(db, args.seed)
        await roll_up_all(db, now)
        print(
            "reports (median / max of the timed runs, after 2 untimed; raw events alone, then with rollups):"
        )
        await time_reports(db, row["last"] or now, args.runs, sellers)
        await record_cost(db, now)
    finally:
        await db.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_connection_arguments(
        parser, "an existing database loaded by an earlier --keep run (not loaded again)"
    )
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=365, help="the events' span, ending now")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--keep", action="store_true", help="keep the database (its URL is printed)")
    args = parser.parse_args()
    print_environment()
    free = shutil.disk_usage("/").free
    print(f"disk: {free / 2**30:.0f} GiB free; this load needs about {args.events * 420 / 2**30:.1f} GiB")
    if args.database_url:
        asyncio.run(run(args, args.database_url))
        return
    with empty_database(args.admin_url, "market_volume", keep=args.keep) as url:
        asyncio.run(run(args, url))


if __name__ == "__main__":
    main()
