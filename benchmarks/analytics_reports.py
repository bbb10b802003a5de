"""Business reports over a large analytics log: every `SqlAnalyticsReports` report (funnel, search, payments,
carts, sessions, payments_by_day, seller_dashboard) over a 30-day and a 1-day period, on a fresh database
(PostgreSQL by default, or a SQLite file) holding `--events` analytics events (1 000 000 by default) from
~100 000 simulated shopping sessions, with the catalog and the orders the seller dashboard joins. Also the
cost of writing one event (`SqlAnalyticsLog.record`, which every item view and search now pays). Prints a
table; nothing is asserted.

The sessions: item views and searches (queries from a vocabulary with a long tail, some without results),
then for some of them cart additions and removals by a signed-in buyer, checkouts, card payments that succeed,
are declined or error (a new order per retry), paid orders. Events are loaded in time order, as the service
writes them: COPY on PostgreSQL, one executemany transaction on SQLite; then VACUUM ANALYZE (SQLite: ANALYZE
only with `--sqlite-analyze`, since the service never runs it).

Each report runs `--warmup` times untimed (5: PostgreSQL may switch a prepared statement to a generic plan at
its 6th execution on a connection, so the timed runs show what a long-lived pooled connection gets), then
`--runs` times timed. `--explain` prints the plans of the statements of every report over target (1 s on
PostgreSQL, 10 s on SQLite); `--keep` and `--database-url` let you rerun on the same data.

    .venv/bin/python benchmarks/analytics_reports.py [--engine sqlite] [--events 1000000] [--explain]
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import itertools
import os
import random
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from pathlib import Path
from typing import Any

from _harness import add_connection_arguments, empty_database, print_environment, workdir

from market.adapters.db.analytics import SqlAnalyticsLog, SqlAnalyticsReports
from market.adapters.db.database import Database
from market.adapters.db.rows import ITEM_COLUMNS
from market.config import DatabaseSettings, DatabaseURL
from market.domain import events as domain_events
from market.domain.analytics import Period
from market.telemetry import request_context

DAYS = 30
ABANDON_AFTER = timedelta(days=1)
EVENT_COLUMNS = (
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
USER_COLUMNS = ("id", "email", "display_name", "role", "password_hash", "created_at")
ORDER_COLUMNS = (
    "id",
    "buyer_id",
    "status",
    "total_cents",
    "currency",
    "traceparent",
    "created_at",
    "updated_at",
)
LINE_COLUMNS = ("order_id", "item_id", "seller_id", "title", "quantity", "unit_price_cents")

_COLOURS = "blue red green black white grey yellow orange purple teal navy olive amber".split()
_MATERIALS = "ceramic wooden steel cotton leather glass bamboo linen wool copper marble cork".split()
_THINGS = {
    "kitchen": "mug teapot bowl plate spoon kettle jug cutting-board grinder tray".split(),
    "home": "lamp vase cushion blanket clock mirror basket candle frame rug".split(),
    "fashion": "scarf bag wallet belt hat gloves socks jacket shirt apron".split(),
    "office": "notebook pen desk-organiser stapler folder planner bookend".split(),
    "garden": "planter watering-can trowel bird-feeder hose bench lantern".split(),
    "toys": "puzzle kite yo-yo train doll blocks spinning-top marbles".split(),
}
_NOT_SOLD = (
    "bicycle iphone case laptop sofa tv stand perfume sneakers headphones drone coffee machine printer ink"
    " phone charger gaming chair air fryer"
).split()
# Shoppers by hour of the day (UTC): quiet nights, busy evenings.
_HOURLY = [1, 0.6, 0.4, 0.3, 0.3, 0.5, 1, 2, 3, 4, 4.5, 5, 5, 5, 5, 5, 5.5, 6, 7, 8, 8, 7, 5, 2.5]


@dataclass(frozen=True, slots=True)
class _Item:
    id: uuid.UUID
    seller_id: uuid.UUID
    title: str
    price_cents: int
    currency: str


class _Picker:
    """Weighted choice in O(log n)."""

    def __init__(self, values: Sequence[Any], weights: Sequence[float]) -> None:
        self.values = values
        self.cumulative = list(itertools.accumulate(weights))

    def pick(self, rng: random.Random) -> Any:
        return self.values[bisect.bisect(self.cumulative, rng.random() * self.cumulative[-1])]


def _zipf(values: Sequence[Any], exponent: float, offset: float = 1.0) -> _Picker:
    return _Picker(values, [1 / (rank + offset) ** exponent for rank in range(len(values))])


_VALUES = EVENT_COLUMNS[5:]


def _event(
    t: datetime, kind: str, session: str, user: uuid.UUID | None, trace: str, **values: Any
) -> tuple[Any, ...]:
    """A row of analytics_events, in EVENT_COLUMNS order."""
    return (t, kind, session, user, trace, *(values.get(column) for column in _VALUES))


def _uuid(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)


def _hex(rng: random.Random) -> str:
    return f"{rng.getrandbits(128):032x}"


@dataclass
class _Shop:
    """Sellers, items, buyers and what shoppers type, and everything the simulation wrote."""

    rng: random.Random
    start: datetime
    sellers: list[tuple[Any, ...]] = field(default_factory=list)
    buyers: list[tuple[Any, ...]] = field(default_factory=list)
    items: list[tuple[Any, ...]] = field(default_factory=list)
    events: list[tuple[Any, ...]] = field(default_factory=list)
    orders: list[tuple[Any, ...]] = field(default_factory=list)
    lines: list[tuple[Any, ...]] = field(default_factory=list)
    sessions: int = 0

    def build(self, sellers: int, items: int, buyers: int) -> None:
        rng = self.rng
        created = self.start - timedelta(days=200)
        for n in range(sellers):
            self.sellers.append(
                (_uuid(rng), f"seller{n}@bench.market.dev", f"Studio {n}", "seller", "not-a-hash", created)
            )
        for n in range(buyers):
            self.buyers.append(
                (_uuid(rng), f"buyer{n}@bench.market.dev", f"Buyer {n}", "buyer", "not-a-hash", created)
            )
        catalog = []
        for _ in range(items):
            category = rng.choice(list(_THINGS))
            thing = rng.choice(_THINGS[category]).replace("-", " ")
            colour, material = rng.choice(_COLOURS), rng.choice(_MATERIALS)
            item = _Item(
                _uuid(rng),
                rng.choice(self.sellers)[0],
                f"{colour.title()} {material} {thing}",
                rng.randrange(199, 25000),
                "EUR" if rng.random() < 0.75 else "USD",
            )
            catalog.append(item)
            listed = created + timedelta(seconds=rng.randrange(0, 150 * 86400))
            self.items.append(
                (
                    item.id,
                    item.seller_id,
                    item.title,
                    f"A {colour} {thing} made of {material}.",
                    item.price_cents,
                    item.currency,
                    rng.randrange(0, 60),
                    category,
                    "active",
                    listed,
                    listed,
                )
            )
        rng.shuffle(catalog)
        self.popular_items = _zipf(catalog, 0.9, offset=5)
        self.popular_buyers = _zipf([row[0] for row in self.buyers], 0.5, offset=50)
        self.queries = self._vocabulary()
        self.hours = _Picker(range(24), _HOURLY)

    def _vocabulary(self) -> _Picker:
        """~8 000 queries; popularity falls with rank (Zipf); those without results sit mostly in the tail
        (typos, things not sold), a few near the head."""
        rng = self.rng
        things = [t.replace("-", " ") for ts in _THINGS.values() for t in ts]
        found = [*things, *_THINGS, "handmade", "gift"]
        found += [f"{c} {t}" for c in _COLOURS for t in things]
        found += [f"{m} {t}" for m in _MATERIALS for t in things]
        found += rng.sample([f"{c} {m} {t}" for c in _COLOURS for m in _MATERIALS for t in things], 2500)
        typos = set()
        for query in rng.sample(found, 2500):
            at = rng.randrange(len(query))
            typos.add(
                query[:at] + query[at + 1 :] if rng.random() < 0.5 else query[:at] + query[at] + query[at:]
            )
        empty = sorted(typos - set(found)) + _NOT_SOLD
        scored = [(rng.paretovariate(1.2), q, int(rng.lognormvariate(3, 1.3)) + 1) for q in found]
        scored += [(rng.paretovariate(1.2) * 0.1, q, 0) for q in empty]
        scored.sort(reverse=True)
        return _zipf([(q, n) for _, q, n in scored], 1.0)

    def simulate(self, days: int, target_events: int) -> None:
        while len(self.events) < target_events:
            self.sessions += 1
            self._session(days)
        self.events.sort(key=itemgetter(0))

    def _session(self, days: int) -> None:
        rng = self.rng
        session = _hex(rng)
        t = self.start + timedelta(
            days=rng.randrange(days), hours=self.hours.pick(rng), seconds=rng.random() * 3600
        )
        signed_in = self.popular_buyers.pick(rng) if rng.random() < 0.12 else None
        wants_cart = rng.random() < 0.22
        cart: dict[_Item, int] = {}
        found = False
        out = self.events
        for _ in range(1 + int(rng.expovariate(1 / 8.8))):
            t += timedelta(
                seconds=rng.expovariate(1 / 40) if rng.random() > 0.03 else rng.uniform(1800, 7200)
            )
            if (found and rng.random() < 0.8) or rng.random() < 0.55:
                item = self.popular_items.pick(rng)
                out.append(
                    _event(
                        t,
                        "item_viewed",
                        session,
                        signed_in,
                        _hex(rng),
                        item_id=item.id,
                        seller_id=item.seller_id,
                    )
                )
                found = False
                if wants_cart and rng.random() < (0.45 if not cart else 0.2):
                    signed_in = signed_in or self.popular_buyers.pick(rng)
                    quantity = 1 if rng.random() < 0.8 else rng.randrange(2, 4)
                    cart[item] = cart.get(item, 0) + quantity
                    t += timedelta(seconds=rng.uniform(3, 60))
                    out.append(
                        _event(
                            t, "cart_add", session, signed_in, _hex(rng), item_id=item.id, quantity=quantity
                        )
                    )
                elif len(cart) > 1 and rng.random() < 0.1:
                    removed = rng.choice(list(cart))
                    t += timedelta(seconds=rng.uniform(3, 60))
                    quantity = cart.pop(removed)
                    out.append(
                        _event(
                            t,
                            "cart_remove",
                            session,
                            signed_in,
                            _hex(rng),
                            item_id=removed.id,
                            quantity=quantity,
                        )
                    )
            else:
                query, results = self.queries.pick(rng)
                out.append(
                    _event(t, "search", session, signed_in, _hex(rng), query=query, result_count=results)
                )
                found = results > 0
        if cart and rng.random() < 0.5:
            self._checkouts(session, signed_in, cart, t)

    def _checkouts(self, session: str, buyer: uuid.UUID, cart: dict[_Item, int], t: datetime) -> None:
        rng = self.rng
        currency = next(iter(cart)).currency
        lines = [(item, quantity) for item, quantity in cart.items() if item.currency == currency]
        total = sum(item.price_cents * quantity for item, quantity in lines)
        for _ in range(3):  # a new order per retry
            t += timedelta(seconds=rng.uniform(20, 300))
            order = _uuid(rng)
            self.events.append(
                _event(
                    t,
                    "checkout_started",
                    session,
                    buyer,
                    _hex(rng),
                    order_id=order,
                    quantity=len(lines),
                    amount_cents=total,
                    currency=currency,
                )
            )
            t += timedelta(seconds=rng.uniform(1, 8))
            trace, roll = _hex(rng), rng.random()
            if roll < 0.84:
                kind, reason, status = "payment_succeeded", None, "paid"
            elif roll < 0.95:
                kind, status = "payment_declined", "payment_failed"
                reason = "card_declined" if rng.random() < 0.7 else "insufficient_funds"
            else:
                kind, reason, status = "payment_errored", "gateway_unavailable", "pending_payment"
            self.events.append(
                _event(
                    t,
                    kind,
                    session,
                    buyer,
                    trace,
                    order_id=order,
                    amount_cents=total,
                    currency=currency,
                    method="card",
                    reason=reason,
                )
            )
            if status == "paid":
                paid = t + timedelta(milliseconds=3)
                self.events.append(
                    _event(
                        paid,
                        "order_paid",
                        session,
                        buyer,
                        trace,
                        order_id=order,
                        amount_cents=total,
                        currency=currency,
                    )
                )
            self.orders.append((order, buyer, status, total, currency, None, t, t))
            self.lines.extend(
                (order, item.id, item.seller_id, item.title, quantity, item.price_cents)
                for item, quantity in lines
            )
            if status == "paid" or rng.random() < 0.4:
                return


# --- loading ----------------------------------------------------------------------------------------------


async def _load_postgres(db: Database, shop: _Shop) -> None:
    await db.copy_records("users", USER_COLUMNS, shop.sellers + shop.buyers)
    await db.copy_records("items", ITEM_COLUMNS, shop.items)
    await db.copy_records("orders", ORDER_COLUMNS, shop.orders)
    await db.copy_records("order_lines", LINE_COLUMNS, shop.lines)
    for start in range(0, len(shop.events), 100_000):
        await db.copy_records("analytics_events", EVENT_COLUMNS, shop.events[start : start + 100_000])
    await db.vacuum_analyze("users", "items", "orders", "order_lines", "analytics_events")


def _sqlite_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return str(value.astimezone(UTC))  # what Piccolo's converter writes
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def _load_sqlite(path: str, shop: _Shop, analyze: bool) -> None:
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("BEGIN")
        for table, columns, rows in (
            ("users", USER_COLUMNS, shop.sellers + shop.buyers),
            ("items", ITEM_COLUMNS, shop.items),
            ("orders", ORDER_COLUMNS, shop.orders),
            ("order_lines", LINE_COLUMNS, shop.lines),
            ("analytics_events", EVENT_COLUMNS, shop.events),
        ):
            sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
            connection.executemany(sql, ([_sqlite_value(v) for v in row] for row in rows))
        connection.execute("COMMIT")
        if analyze:
            connection.execute("ANALYZE")
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        connection.close()


# --- timing -----------------------------------------------------------------------------------------------


class _Statements:
    """Remembers the statements a report runs (to EXPLAIN them), by wrapping `Database.fetch`."""

    def __init__(self, db: Database) -> None:
        self.recorded: list[tuple[str, tuple[Any, ...]]] | None = None
        fetch = db.fetch

        async def recording(sql: str, *args: Any) -> Any:
            if self.recorded is not None:
                self.recorded.append((sql, args))
            return await fetch(sql, *args)

        db.fetch = recording  # type: ignore[method-assign]

    @contextmanager
    def record(self) -> Iterator[list[tuple[str, tuple[Any, ...]]]]:
        self.recorded = []
        try:
            yield self.recorded
        finally:
            self.recorded = None


@dataclass
class _Timing:
    report: str
    period: str
    seconds: list[float]
    result: Any

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


async def _time_reports(
    db: Database,
    periods: dict[str, Period],
    seller: str,
    now: datetime,
    warmup: int,
    runs: int,
    only: set[str],
) -> list[_Timing]:
    reports = SqlAnalyticsReports(db)
    calls: dict[str, Callable[[Period], Awaitable[Any]]] = {
        "funnel": reports.funnel,
        "search": reports.search,
        "payments": reports.payments,
        "carts": lambda p: reports.carts(p, ABANDON_AFTER, now),
        "sessions": reports.sessions,
        "payments_by_day": reports.payments_by_day,
        "seller_dashboard": lambda p: reports.seller_dashboard(seller, p),
    }
    timings = []
    for label, period in periods.items():
        for name, call in calls.items():
            if only and name not in only:
                continue
            for _ in range(warmup):
                await call(period)
            seconds = []
            for _ in range(max(runs, 1)):
                started = time.perf_counter()
                result = await call(period)
                seconds.append(time.perf_counter() - started)
            timings.append(_Timing(name, label, seconds, result))
            print(
                f"  {name:<17} {label:<7} median {statistics.median(seconds):7.3f} s  max {max(seconds):7.3f} s"
                f"  (runs: {' '.join(f'{x:.3f}' for x in seconds)})"
            )
    return timings


async def _explain(db: Database, statements: _Statements, call: Callable[[], Awaitable[Any]]) -> None:
    """The plan of every statement `call` runs (on PostgreSQL: planned for these parameters, as the first
    five executions of a prepared statement are, and executed)."""
    with statements.record() as recorded:
        await call()
    prefix = "EXPLAIN (ANALYZE, BUFFERS) " if db.is_postgres else "EXPLAIN QUERY PLAN "
    for sql, args in recorded:
        if sql.startswith("SET "):
            continue
        print(f"--- {' '.join(sql.split())}")
        for row in await db.fetch(prefix + sql, *args):
            print(
                "   ",
                row["QUERY PLAN"] if db.is_postgres else f"{row['id']:>3} {row['parent']:>3} {row['detail']}",
            )


async def _insert_cost(
    db: Database, shop_items: list[tuple[uuid.UUID, uuid.UUID]], at: datetime, n: int
) -> dict[str, list[float]]:
    """`SqlAnalyticsLog.record` of one event, as a request outside a transaction writes it (item views and
    searches), under a request context like the edge middleware's."""
    log = SqlAnalyticsLog(db)
    rng = random.Random(7)
    costs: dict[str, list[float]] = {"item_viewed": [], "search": []}
    trace = _hex(rng)
    token = request_context.begin(_hex(rng), trace)
    try:
        for i in range(n):
            item, seller = rng.choice(shop_items)
            for kind, event in (
                ("item_viewed", domain_events.ItemViewed(str(item), str(seller))),
                ("search", domain_events.SearchPerformed(rng.choice(["mug", "blue mug", "kettle"]), 12)),
            ):
                started = time.perf_counter()
                await log.record([event], at + timedelta(microseconds=i))
                costs[kind].append(time.perf_counter() - started)
    finally:
        request_context.end(token)
        # Leaves the database as it was, for the next run with --database-url.
        await db.fetch("DELETE FROM analytics_events WHERE trace_id = {}", trace)
    return costs


async def _facts(db: Database) -> tuple[datetime, datetime, str, int, int]:
    """(first event, last event, the seller with the most item views, sessions, events) of the database."""
    span = (
        await db.fetch(
            "SELECT min(occurred_at) AS first, max(occurred_at) AS last, count(*) AS n FROM analytics_events"
        )
    )[0]
    seller = (
        await db.fetch(
            "SELECT seller_id, count(*) AS n FROM analytics_events WHERE kind = 'item_viewed'"
            " GROUP BY seller_id ORDER BY n DESC LIMIT 1"
        )
    )[0]["seller_id"]
    sessions = (await db.fetch("SELECT count(DISTINCT session_id) AS n FROM analytics_events"))[0]["n"]
    first, last = (
        datetime.fromisoformat(v) if isinstance(v, str) else v for v in (span["first"], span["last"])
    )
    return first, last, str(seller), int(sessions), int(span["n"])


async def _sizes(db: Database) -> list[tuple[str, int]]:
    if db.is_postgres:
        rows = await db.fetch(
            "SELECT c.relname AS name, pg_relation_size(c.oid) AS bytes FROM pg_class c"
            " WHERE c.relname = 'analytics_events' OR c.oid IN (SELECT indexrelid FROM pg_index"
            "  WHERE indrelid = 'analytics_events'::regclass) ORDER BY c.relname"
        )
        return [(r["name"], int(r["bytes"])) for r in rows]
    try:
        rows = await db.fetch(
            "SELECT name, sum(pgsize) AS bytes FROM dbstat WHERE name LIKE 'analytics%'"
            " OR name LIKE 'sqlite_autoindex_analytics%' GROUP BY name ORDER BY name"
        )
        return [(r["name"], int(r["bytes"])) for r in rows]
    except sqlite3.OperationalError:  # SQLite built without the dbstat table
        return []


def _mib(n: float) -> str:
    return f"{n / 1048576:.1f} MiB"


def _percentile(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def _run(args: argparse.Namespace, url: str, sqlite_path: str | None) -> None:
    db = Database(DatabaseSettings(DatabaseURL.parse(url)))
    await db.start()
    try:
        if not args.database_url:
            await db.migrate()
            rng = random.Random(args.seed)
            end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
            shop = _Shop(rng, end - timedelta(days=DAYS))
            started = time.perf_counter()
            shop.build(args.sellers, args.items, args.buyers)
            shop.simulate(DAYS, args.events)
            generated = time.perf_counter() - started
            started = time.perf_counter()
            if sqlite_path is None:
                await _load_postgres(db, shop)
            else:
                await asyncio.to_thread(_load_sqlite, sqlite_path, shop, args.sqlite_analyze)
            loaded = time.perf_counter() - started
            print(
                f"seed: {len(shop.events)} events from {shop.sessions} sessions over {DAYS} days,"
                f" {len(shop.items)} items of {len(shop.sellers)} sellers, {len(shop.buyers)} buyers,"
                f" {len(shop.orders)} orders ({len(shop.lines)} lines): generated in {generated:.1f} s,"
                f" loaded{' and vacuum-analysed' if sqlite_path is None else ''} in {loaded:.1f} s"
            )
            kinds = {}
            for row in shop.events:
                kinds[row[1]] = kinds.get(row[1], 0) + 1
            print(
                "  by kind: " + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items(), key=lambda kv: -kv[1]))
            )
            searches = [row for row in shop.events if row[1] == "search"]
            empty = sum(1 for row in searches if row[9] == 0)
            print(
                f"  searches without results: {empty / len(searches):.1%};"
                f" distinct queries: {len({row[8] for row in searches})}"
            )
            del shop, searches
        first, last, seller, sessions, count = await _facts(db)
        print(f"database: {count} events, {sessions} sessions, {first} .. {last}")
        for name, size in await _sizes(db):
            print(f"  {name:<40} {_mib(size):>9}")
        if sqlite_path is not None:
            print(f"  file: {_mib(await asyncio.to_thread(os.path.getsize, sqlite_path))}")
        # The periods a user asks for: the last 30 days (default) and the last day, up to "now".
        now = last + timedelta(minutes=5)
        periods = {
            "30 days": Period(now - timedelta(days=DAYS), now),
            "1 day": Period(now - timedelta(days=1), now),
        }
        statements = _Statements(db)
        print(
            f"reports ({args.warmup} untimed runs, then {args.runs} timed; seller dashboard of the most viewed"
            " seller):"
        )
        only = set(args.only.split(",")) if args.only else set()
        timings = await _time_reports(db, periods, seller, now, args.warmup, args.runs, only)

        slow = 1.0 if db.is_postgres else 10.0
        if args.explain:
            for timing in timings:
                if timing.median >= slow or args.explain_all:
                    print(f"\n=== {timing.report}, {timing.period}: median {timing.median:.3f} s")
                    period = periods[timing.period]
                    call = {
                        "carts": lambda p=period: SqlAnalyticsReports(db).carts(p, ABANDON_AFTER, now),
                        "seller_dashboard": lambda p=period: SqlAnalyticsReports(db).seller_dashboard(
                            seller, p
                        ),
                    }.get(
                        timing.report,
                        lambda p=period, r=timing.report: getattr(SqlAnalyticsReports(db), r)(p),
                    )
                    await _explain(db, statements, call)

        item_rows = await db.fetch("SELECT id, seller_id FROM items LIMIT 2000")
        items = [(r["id"], r["seller_id"]) for r in item_rows]
        costs = await _insert_cost(db, items, now - timedelta(hours=1), args.inserts)

        print(f"\n{'report':<17} {'period':<8} {'median s':>9} {'max s':>9}")
        for timing in timings:
            flag = "  <-- over target" if timing.median >= slow else ""
            print(
                f"{timing.report:<17} {timing.period:<8} {timing.median:9.3f} {max(timing.seconds):9.3f}{flag}"
            )
        for kind, seconds in costs.items():
            print(
                f"record({kind}) x{len(seconds)}: p50 {_percentile(seconds, 50) * 1000:.2f} ms,"
                f" p95 {_percentile(seconds, 95) * 1000:.2f} ms, max {max(seconds) * 1000:.2f} ms"
            )
        if args.dump:
            text = "".join(f"{t.report} {t.period}: {t.result!r}\n" for t in timings)
            await asyncio.to_thread(Path(args.dump).write_text, text)
            print(f"report results written to {args.dump}")
    finally:
        await db.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--engine", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--events", type=int, default=1_000_000, help="analytics events to seed")
    parser.add_argument("--sellers", type=int, default=300)
    parser.add_argument("--items", type=int, default=5000)
    parser.add_argument("--buyers", type=int, default=40_000)
    parser.add_argument("--seed", type=int, default=42, help="random seed of the simulated shop")
    parser.add_argument(
        "--warmup",
        type=int,
        default=5,
        help="untimed runs per report and period first: asyncpg prepares each statement once per connection and"
        " PostgreSQL may switch to a generic plan at its 6th execution, so the timed runs are the steady state"
        " of a pooled connection (default: %(default)s)",
    )
    parser.add_argument("--runs", type=int, default=5, help="timed runs per report and period")
    parser.add_argument(
        "--inserts", type=int, default=1000, help="timed SqlAnalyticsLog.record calls per kind"
    )
    parser.add_argument(
        "--explain", action="store_true", help="EXPLAIN the statements of reports over target"
    )
    parser.add_argument("--only", default="", help="comma-separated reports to time (default: all)")
    parser.add_argument("--explain-all", action="store_true", help="with --explain: every report")
    parser.add_argument("--sqlite-analyze", action="store_true", help="run ANALYZE after seeding SQLite")
    parser.add_argument("--dump", default=None, help="write every report's result to this file")
    add_connection_arguments(
        parser,
        "Report on this already seeded database instead (neither seeded nor dropped; the record()"
        " timing adds 2 x --inserts rows to it).",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the seeded database (reuse: --database-url)"
    )
    args = parser.parse_args()
    print_environment()
    if args.database_url:
        path = DatabaseURL.parse(args.database_url).path
        asyncio.run(_run(args, args.database_url, path))
    elif args.engine == "sqlite":
        if args.keep:
            path = tempfile.mkdtemp(prefix="market-bench-") + "/analytics.db"
            asyncio.run(_run(args, f"sqlite:///{path}", path))
            print(f"database kept: sqlite:///{path}")
            return
        with workdir() as cwd:
            path = str(Path(cwd) / "analytics.db")
            asyncio.run(_run(args, f"sqlite:///{path}", path))
    else:
        with empty_database(args.admin_url, "market_bench_analytics", keep=args.keep) as url:
            asyncio.run(_run(args, url, None))


if __name__ == "__main__":
    main()
