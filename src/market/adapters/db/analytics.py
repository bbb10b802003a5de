"""The analytics events: appended with the business change they describe, and read by the reports.

Every report query is bounded by its period through the (kind, occurred_at) and (occurred_at) indexes; the
search-success look-ups follow the (session_id, occurred_at) index (PostgreSQL may hash-join them instead),
the carts report a buyer's checkouts and the seller conversion a session's payments through partial indexes
(m0003). The same SQL runs on both engines except for time arithmetic, which each engine spells its own way
(`_Dialect`). benchmarks/analytics_reports.py times every report at 1M events.
"""

from __future__ import annotations

import functools
import logging
import math
import re
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any, Concatenate, ParamSpec, TypeVar

from market.batching import BatchBuffer
from market.domain import events
from market.domain.analytics import (
    SEARCH_SUCCESS_WINDOW,
    TOP,
    AmountStats,
    CartsReport,
    FunnelReport,
    MethodStats,
    PaymentsOnDay,
    PaymentsReport,
    Period,
    QueryCount,
    RefundTotals,
    Revenue,
    SearchReport,
    SellerDashboard,
    SellerItemStats,
    SessionsReport,
    funnel_report,
    percentile,
    proportional_shares,
    rate,
    round_half_up,
)
from market.domain.money import Money
from market.domain.orders import NOT_RECEIVED_BY_PROVIDER

from .database import Database
from .rollups import AnalyticsRollups, Split
from .tables import AnalyticsEventRow, select_list

log = logging.getLogger(__name__)

PARTITION_MONTHS_AHEAD = 3
"""PostgreSQL: months of partitions kept ready ahead of the current one (m0006 creates as many)."""
_PARTITION = re.compile(r"analytics_events_(\d{4})(\d{2})")

_PAYMENT_KINDS = {
    "succeeded": "payment_succeeded",
    "declined": "payment_declined",
    "error": "payment_errored",
}
_COLUMNS = select_list(AnalyticsEventRow, without=("id",))  # the order _INSERT's values follow
_COLUMN_NAMES = tuple(_COLUMNS.split(", "))
# Events about an order after its checkout (a payment settled by a provider webhook or by reconciliation)
# belong to the session and buyer that checked out, not to whichever request or job delivered them.
_VALUES = (
    "({}, {},"
    " COALESCE((SELECT session_id FROM analytics_events"
    "   WHERE kind = 'checkout_started' AND order_id = {} LIMIT 1), {}),"
    " COALESCE((SELECT user_id FROM analytics_events"
    "   WHERE kind = 'checkout_started' AND order_id = {} LIMIT 1), {}),"
    " {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {})"
)
_INSERT = f"INSERT INTO analytics_events ({_COLUMNS}) VALUES {_VALUES}"
_VALUES_PER_ROW = _VALUES.count("{}")


@functools.lru_cache(maxsize=16)
def _insert_sql(rows: int) -> str:
    """One INSERT of `rows` events (multi-row VALUES): the events of one business change in one statement."""
    return (
        _INSERT
        if rows == 1
        else f"INSERT INTO analytics_events ({_COLUMNS}) VALUES " + ", ".join([_VALUES] * rows)
    )


@dataclass(frozen=True, slots=True)
class _Row:
    kind: str
    item_id: str | None = None
    seller_id: str | None = None
    order_id: str | None = None
    query: str | None = None
    result_count: int | None = None
    quantity: int | None = None
    amount_cents: int | None = None
    currency: str | None = None
    method: str | None = None
    reason: str | None = None


def _row(event: events.Event) -> _Row | None:
    """The analytics row of a domain event, or None for events analytics does not keep."""
    match event:
        case events.ItemViewed():
            return _Row("item_viewed", item_id=event.item_id, seller_id=event.seller_id)
        case events.SearchPerformed():
            return _Row("search", query=event.query, result_count=event.result_count)
        case events.CartChanged():
            return _Row(
                "cart_add" if event.action == "add" else "cart_remove",
                item_id=event.item_id,
                quantity=abs(event.quantity_delta),
            )
        case events.CheckoutStarted():
            return _Row(
                "checkout_started",
                order_id=event.order_id,
                amount_cents=event.total.cents,
                currency=event.total.currency,
                quantity=event.line_count,
            )
        case events.PaymentAttempted():
            return _Row(
                _PAYMENT_KINDS[event.outcome],
                order_id=event.order_id,
                amount_cents=event.amount.cents,
                currency=event.amount.currency,
                method=event.method,
                reason=event.reason,
            )
        case events.OrderPaid():
            return _Row(
                "order_paid",
                order_id=event.order_id,
                amount_cents=event.total.cents,
                currency=event.total.currency,
            )
        case events.OrderRefunded():
            return _Row(
                "order_refunded",
                order_id=event.order_id,
                amount_cents=event.amount.cents,
                currency=event.amount.currency,
                reason=event.reason,
            )
    return None


Identity = Callable[[], tuple[str | None, str | None, str | None]]
"""(session id, user id, trace id) of the work in progress, given by bootstrap
(`market.telemetry.request_context.identity`): the database adapter reads no telemetry context itself."""


def anonymous() -> tuple[str | None, str | None, str | None]:
    """No session, no user, no trace: what records written outside any request carry by default."""
    return None, None, None


class SqlAnalyticsLog:
    def __init__(self, db: Database, identity: Identity = anonymous) -> None:
        self._db = db
        self._identity = identity

    async def record(self, published: Sequence[events.Event], now: datetime) -> None:
        """The events' rows, in one statement."""
        session_id, user_id, trace_id = self._identity()
        values: list[Any] = []
        for event in published:
            row = _row(event)
            if row is None:
                continue
            values += (
                now,
                row.kind,
                row.order_id,
                session_id,
                row.order_id,
                user_id,
                trace_id,
                row.item_id,
                row.seller_id,
                row.order_id,
                row.query,
                row.result_count,
                row.quantity,
                row.amount_cents,
                row.currency,
                row.method,
                row.reason,
            )
        if values:
            await self._db.fetch(_insert_sql(len(values) // _VALUES_PER_ROW), *values)


_WIDTH = _COLUMNS.count(",") + 1
"""Values per event in BufferedAnalyticsLog's buffer: every column but the id, in _COLUMNS' order."""
CAPACITY = 20_000
BATCH = 2_000
FLUSH_INTERVAL_S = 1.0
SQLITE_ROWS_PER_INSERT = 500
"""15 parameters a row: far below SQLite's limit of 32 766 variables a statement."""


class BufferedAnalyticsLog:
    """The analytics log of reads outside a transaction (item views, searches): the request appends the row's
    values to a per-process buffer (market.batching, as session recording does) and a background writer stores
    them every FLUSH_INTERVAL_S or BATCH events, with COPY on PostgreSQL, so the request no longer waits for an
    INSERT. Reports in this process flush it before they read (bootstrap wraps them: `flushed_first`); other
    processes see the events within about a second. A batch that cannot be written stays buffered and is
    retried; when the buffer is full, or the writer is not running (commands, tests), or an event belongs to an
    order (it takes the session of the order's checkout), the event is written at once as before. Events
    recorded in a unit of work stay in its transaction (SqlAnalyticsLog).

    A late batch is never lost from the rollups: its rows get ids above the rollup watermark, so a day already
    rolled up is read raw, then rolled up again (rollups.py)."""

    def __init__(
        self,
        db: Database,
        identity: Identity = anonymous,
        *,
        capacity: int = CAPACITY,
        batch: int = BATCH,
        flush_interval_s: float = FLUSH_INTERVAL_S,
    ) -> None:
        self._db = db
        self._identity = identity
        self._direct = SqlAnalyticsLog(db, identity)
        self.buffer = BatchBuffer(
            self._write,
            width=_WIDTH,
            capacity=capacity,
            batch=batch,
            interval_s=flush_interval_s,
            name="analytics-events",
            on_failure=self._lost,
        )

    async def record(self, published: Sequence[events.Event], now: datetime) -> None:
        buffer = self.buffer
        rows = [row for row in map(_row, published) if row is not None]
        if not rows:
            return
        if not buffer.running or not buffer.has_room(len(rows)) or any(r.order_id for r in rows):
            await self._direct.record(published, now)
            return
        session_id, user_id, trace_id = self._identity()
        values = buffer.values
        for r in rows:
            values += (
                now,
                r.kind,
                session_id,
                user_id,
                trace_id,
                r.item_id,
                r.seller_id,
                None,
                r.query,
                r.result_count,
                r.quantity,
                r.amount_cents,
                r.currency,
                r.method,
                r.reason,
            )
        buffer.appended()

    async def flush(self) -> int:
        return await self.buffer.flush()

    async def _write(self, values: list[Any], side: list[Any]) -> None:
        # no side items: `record` adds none
        records = zip(*[iter(values)] * _WIDTH, strict=True)
        if self._db.is_postgres:
            await self._db.copy_records("analytics_events", _COLUMN_NAMES, records)
            return
        rows = list(records)
        row = "(" + ", ".join("{}" for _ in _COLUMN_NAMES) + ")"
        async with self._db.write_transaction():
            for start in range(0, len(rows), SQLITE_ROWS_PER_INSERT):
                chunk = rows[start : start + SQLITE_ROWS_PER_INSERT]
                await self._db.fetch(
                    f"INSERT INTO analytics_events ({_COLUMNS}) VALUES " + ", ".join(row for _ in chunk),
                    *(value for record in chunk for value in record),
                )

    @staticmethod
    def _lost(values: list[Any], side: list[Any]) -> None:
        log.error(
            "analytics events could not be written and were lost", extra={"events": len(values) // _WIDTH}
        )


class _Dialect:
    """Time arithmetic, which the engines spell differently. `seconds` are trusted integers."""

    def __init__(self, postgres: bool) -> None:
        self.postgres = postgres

    def seconds_between(self, earlier: str, later: str) -> str:
        if self.postgres:
            return f"EXTRACT(EPOCH FROM ({later} - {earlier}))"
        return f"((julianday({later}) - julianday({earlier})) * 86400.0)"

    def not_later_than(self, moment: str, start: str, seconds: int) -> str:
        """`moment` is at most `seconds` after `start`."""
        if self.postgres:
            return f"{moment} <= {start} + INTERVAL '{int(seconds)} seconds'"
        return f"julianday({moment}) <= julianday({start}) + {int(seconds)} / 86400.0"

    def day(self, column: str) -> str:
        if self.postgres:
            return f"to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
        return f"substr({column}, 1, 10)"  # stored as UTC text by Piccolo's converter


def _percentile_sql(values_sql: str, ctes: str = "") -> str:
    """The rows of `values_sql` (columns `grp`, `value` and any others, passed through) that the 50th and 95th
    percentiles of each group lie between, with their 0-based rank and the group's size: the database sorts,
    only four rows per group travel. `ctes`: common table expressions `values_sql` reads, each followed by a
    comma."""
    ranks = " OR ".join(f"rank IN (((n - 1) * {p}) / 100, ((n - 1) * {p}) / 100 + 1)" for p in (50, 95))
    return (
        f"WITH {ctes}v AS ({values_sql}),"
        " r AS (SELECT v.*, row_number() OVER (PARTITION BY grp ORDER BY value) - 1 AS rank,"
        "   count(*) OVER (PARTITION BY grp) AS n FROM v)"
        f" SELECT * FROM r WHERE {ranks}"
    )


def _percentiles(rows: Iterable[Mapping[str, Any]]) -> dict[Any, tuple[int, dict[int, float]]]:
    """group -> (count, rank -> value) from the rows of `_percentile_sql`."""
    groups: dict[Any, tuple[int, dict[int, float]]] = {}
    for row in rows:
        groups.setdefault(row["grp"], (int(row["n"]), {}))[1][int(row["rank"])] = float(row["value"])
    return groups


REPORT_WORK_MEM = "64MB"
"""PostgreSQL memory a report's sorts and hash tables may each use (the reports run one at a time, rarely)."""

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _planned_for_its_period(
    report: Callable[Concatenate[SqlAnalyticsReports, _P], Awaitable[_R]],
) -> Callable[Concatenate[SqlAnalyticsReports, _P], Awaitable[_R]]:
    """Runs a report in a transaction whose statements PostgreSQL plans for their own parameters every time,
    free of the per-request statement timeout (a report may scan a year of events).

    asyncpg prepares a statement once per connection, and from its sixth execution on PostgreSQL may keep a
    generic plan, made without the period's bounds: it guesses a short period, and long reports then take
    far longer than planning each statement afresh costs (figures: benchmarks/README.md, analytics_reports.py)."""

    @functools.wraps(report)
    async def run(self: SqlAnalyticsReports, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        if not self._db.is_postgres:
            return await report(self, *args, **kwargs)
        async with self._db.engine.transaction(), self._db.long_statements():
            await self._db.fetch("SET LOCAL plan_cache_mode = force_custom_plan")
            # Grouping a month's sessions and sorting their durations fits in memory instead of spilling to
            # disk (4 MB, the default, made the 30-day sessions report at 10 M events twice as slow).
            await self._db.fetch(f"SET LOCAL work_mem = '{REPORT_WORK_MEM}'")
            # JIT compiling a report's plan took longer (≈ 0.12 s at 10 M events) than it saved.
            await self._db.fetch("SET LOCAL jit = off")
            return await report(self, *args, **kwargs)

    return run


FINAL_PAYMENT_KIND = (
    "CASE WHEN a.kind <> 'payment_errored' THEN a.kind"
    " WHEN EXISTS (SELECT 1 FROM analytics_events p"
    " WHERE p.kind = 'order_paid' AND p.order_id = a.order_id) THEN 'payment_succeeded'"
    " WHEN EXISTS (SELECT 1 FROM payments d WHERE d.order_id = a.order_id AND d.status = 'declined'"
    f" AND (d.failure_reason IS NULL OR d.failure_reason <> '{NOT_RECEIVED_BY_PROVIDER}'))"
    " THEN 'payment_declined' ELSE a.kind END"
)
"""A payment attempt's final known outcome (SQL over `analytics_events a`): an errored attempt whose order was
paid after all counts as succeeded; one the provider reported failed afterwards (its `payment.failed` event, or
reconciliation reading a declined charge: the order's payment is `declined`) counts as declined. One the provider
never received (reconciliation found no charge) stays errored: the call failed, no card was declined. Failures
leave no analytics event, so the order's payment row says it. The payment success SLI (docs/MONITORING-SETUP.md,
SLI catalogue)."""


def _edges(prefix: str = "") -> str:
    """The raw edges of a split period, [start, head_end) and [tail_start, end] (arguments: _edge_args)."""
    return (
        f"(({prefix}occurred_at >= {{}} AND {prefix}occurred_at < {{}})"
        f" OR ({prefix}occurred_at >= {{}} AND {prefix}occurred_at <= {{}}))"
    )


def _edge_args(period: Period, split: Split) -> tuple[datetime, datetime, datetime, datetime]:
    return period.start, split.head_end, split.tail_start, period.end


def _coming_back(split: Split) -> str:
    """Which of the edge's sessions (CTE `edge`, with its `tail` flag) may have an `alone = 1` row on the rolled-up
    days: all of them, or those of the tail edge alone when the head edge's day is rolled up too (Split.head_rolled),
    less those the background pass has seen on a day outside them and alone on no rolled-up day
    (`analytics_open_sessions`; rollups.py, `mark_open`): the few looked up one by one in the session index.
    Arguments: the split's first_day and after_day."""
    return (
        "SELECT session_id FROM edge WHERE "
        + ("tail = 1 AND " if split.head_rolled else "")
        + "session_id NOT IN (SELECT session_id FROM analytics_open_sessions"
        " WHERE (day < {} OR day >= {}) AND alone_day IS NULL)"
    )


class SqlAnalyticsReports:
    """The reports. The funnel, search and sessions reports and the seller dashboard read the rollups
    (rollups.py) for the whole days of their period that are rolled up, and the raw events for the rest;
    `use_rollups=False` reads raw events only (the tests compare both)."""

    def __init__(self, db: Database, *, use_rollups: bool = True) -> None:
        self._db = db
        self._sql = _Dialect(db.is_postgres)
        self.rollups = AnalyticsRollups(db)
        self._use_rollups = use_rollups

    async def _split(self, period: Period) -> Split:
        if not self._use_rollups:
            return Split.raw(period)
        return await self.rollups.split(period)

    async def roll_up(self, now: datetime, kept_from: datetime | None = None) -> int:
        """One bounded pass of the rollups (rollups.py); returns how many days it rolled up."""
        return len(await self.rollups.roll_up(now, kept_from=kept_from))

    @_planned_for_its_period
    async def funnel(self, period: Period) -> FunnelReport:
        # A session counts once however many days it spans. The rolled-up days give the sums of their sessions
        # alone on their day (analytics_day_totals: a row a day, whatever the traffic); the sessions seen on
        # several days (`alone = 0`, few: those crossing midnight) and those that come back in the raw edges
        # are grouped by session, from their day rows and edge events, and the latter's alone rows are taken
        # back out of the sums (`back`).
        split = await self._split(period)
        rows = await self._db.fetch(
            "WITH edge AS (SELECT session_id,"
            "  max(CASE WHEN kind IN ('item_viewed', 'search') THEN 1 ELSE 0 END) AS b,"
            "  max(CASE WHEN kind = 'cart_add' THEN 1 ELSE 0 END) AS c,"
            "  max(CASE WHEN kind = 'checkout_started' THEN 1 ELSE 0 END) AS s,"
            "  max(CASE WHEN kind = 'order_paid' THEN 1 ELSE 0 END) AS p,"
            "  max(CASE WHEN occurred_at >= {} THEN 1 ELSE 0 END) AS tail"
            f"  FROM analytics_events WHERE {_edges()} AND session_id IS NOT NULL GROUP BY session_id),"
            " back AS (SELECT session_id, browsed AS b, carted AS c, started AS s, paid AS p"
            "  FROM analytics_session_days WHERE day >= {} AND day < {} AND alone = 1"
            f"  AND session_id IN ({_coming_back(split)})),"
            " grouped AS (SELECT session_id, max(b) AS b, max(c) AS c, max(s) AS s, max(p) AS p FROM ("
            "  SELECT session_id, browsed AS b, carted AS c, started AS s, paid AS p FROM analytics_session_days"
            "  WHERE day >= {} AND day < {} AND alone = 0"
            "  UNION ALL SELECT session_id, b, c, s, p FROM back"
            "  UNION ALL SELECT session_id, b, c, s, p FROM edge) AS u GROUP BY session_id),"
            " sums AS (SELECT coalesce(sum(browsed), 0) AS b, coalesce(sum(carted), 0) AS c,"
            "  coalesce(sum(started), 0) AS s, coalesce(sum(paid), 0) AS p FROM analytics_day_totals"
            "  WHERE day >= {} AND day < {}),"
            " g AS (SELECT count(*) AS b, coalesce(sum(c), 0) AS c, coalesce(sum(c * s), 0) AS s,"
            "  coalesce(sum(c * s * p), 0) AS p FROM grouped WHERE b = 1),"
            " r AS (SELECT count(*) AS b, coalesce(sum(c), 0) AS c, coalesce(sum(c * s), 0) AS s,"
            "  coalesce(sum(c * s * p), 0) AS p FROM back WHERE b = 1)"
            " SELECT sums.b + g.b - r.b AS browsed, sums.c + g.c - r.c AS carted,"
            " sums.s + g.s - r.s AS started, sums.p + g.p - r.p AS paid FROM sums, g, r",
            split.tail_start,
            *_edge_args(period, split),
            *(split.first_day, split.after_day) * 4,
        )
        row = rows[0]
        return funnel_report(
            period, (int(row["browsed"]), int(row["carted"]), int(row["started"]), int(row["paid"]))
        )

    @_planned_for_its_period
    async def search(self, period: Period) -> SearchReport:
        # One pass over the period's searches gives the totals and both top lists (ties by query, as ORDER BY
        # n DESC, query LIMIT TOP would).
        split = await self._split(period)
        queries = await self._db.fetch(
            "WITH q AS (SELECT query, sum(n) AS n, sum(empty) AS empty FROM ("
            "  SELECT query, searches AS n, no_results AS empty FROM analytics_search_days"
            "  WHERE day >= {} AND day < {}"
            "  UNION ALL"
            "  SELECT query, count(*), sum(CASE WHEN result_count = 0 THEN 1 ELSE 0 END)"
            f"  FROM analytics_events WHERE kind = 'search' AND {_edges()}"
            "  GROUP BY query) AS days GROUP BY query),"
            " r AS (SELECT query, n, empty, sum(n) OVER () AS searches, sum(empty) OVER () AS no_results,"
            "  row_number() OVER (ORDER BY n DESC, query) AS top,"
            "  row_number() OVER (ORDER BY empty DESC, query) AS top_empty FROM q)"
            f" SELECT query, n, empty, searches, no_results, top, top_empty FROM r"
            f" WHERE top <= {TOP} OR top_empty <= {TOP}",
            split.first_day,
            split.after_day,
            *_edge_args(period, split),
        )
        # A semi-join (EXISTS in WHERE), which PostgreSQL may run as one hash join, where a correlated EXISTS
        # in the select list probed the session index once per search (1.4 s at 1M events). The bounds on
        # e.occurred_at follow from the others (e >= s >= start, e <= s + window <= end + window; a second
        # more for SQLite's julianday rounding) and keep the engagement side to the period.
        engaged = self._sql.not_later_than("e.occurred_at", "s.occurred_at", SEARCH_SUCCESS_WINDOW.seconds)
        # Whether a search succeeded depends on the search alone (and what followed it), not on the period:
        # the rolled-up days' successes add up.
        succeeded = await self._db.fetch(
            "SELECT (SELECT coalesce(sum(succeeded), 0) FROM analytics_search_days"
            "  WHERE day >= {} AND day < {}) + count(*) AS n FROM analytics_events s"
            f" WHERE s.kind = 'search' AND {_edges('s.')}"
            " AND s.result_count > 0"  # a search with no results never succeeded, whatever followed
            " AND EXISTS (SELECT 1 FROM analytics_events e"
            "  WHERE e.session_id = s.session_id AND e.kind IN ('item_viewed', 'cart_add')"
            f"  AND e.occurred_at >= s.occurred_at AND {engaged}"
            "  AND e.occurred_at >= {} AND e.occurred_at <= {})",
            split.first_day,
            split.after_day,
            *_edge_args(period, split),
            period.start,
            period.end + SEARCH_SUCCESS_WINDOW + timedelta(seconds=1),
        )
        searches = int(queries[0]["searches"]) if queries else 0
        no_results = int(queries[0]["no_results"]) if queries else 0
        top = sorted((r for r in queries if r["top"] <= TOP), key=lambda r: r["top"])
        top_empty = sorted(
            (r for r in queries if r["top_empty"] <= TOP and r["empty"]), key=lambda r: r["top_empty"]
        )
        return SearchReport(
            start=period.start,
            end=period.end,
            searches=searches,
            no_results=no_results,
            no_results_rate=rate(no_results, searches),
            success_rate=rate(int(succeeded[0]["n"]), searches),
            top_queries=tuple(QueryCount(r["query"], int(r["n"])) for r in top),
            top_no_result_queries=tuple(QueryCount(r["query"], int(r["empty"])) for r in top_empty),
        )

    @_planned_for_its_period
    async def payments(self, period: Period) -> PaymentsReport:
        # Each attempt counts by its final known outcome: a charge whose call failed or timed out (errored) but
        # whose order was paid after all (reconciliation found the money taken) is a success.
        rows = await self._db.fetch(
            f"SELECT {FINAL_PAYMENT_KIND} AS kind, a.method AS method, count(*) AS n FROM analytics_events a"
            " WHERE a.kind IN ('payment_succeeded', 'payment_declined', 'payment_errored')"
            " AND a.occurred_at >= {} AND a.occurred_at <= {}"
            f" GROUP BY {FINAL_PAYMENT_KIND}, a.method",
            period.start,
            period.end,
        )
        by_kind: dict[str, int] = defaultdict(int)
        by_method: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # method -> [attempts, succeeded]
        for row in rows:
            n = int(row["n"])
            by_kind[row["kind"]] += n
            by_method[row["method"]][0] += n
            if row["kind"] == "payment_succeeded":
                by_method[row["method"]][1] += n
        attempts = sum(by_kind.values())
        succeeded = by_kind["payment_succeeded"]
        amounts = await self._amounts(period)
        return PaymentsReport(
            start=period.start,
            end=period.end,
            attempts=attempts,
            succeeded=succeeded,
            declined=by_kind["payment_declined"],
            errored=by_kind["payment_errored"],
            success_rate=rate(succeeded, attempts),
            by_method=tuple(
                MethodStats(method, n, rate(ok, n)) for method, (n, ok) in sorted(by_method.items())
            ),
            amounts=amounts,
            refunds=await self._refunds(period, amounts),
        )

    async def _refunds(self, period: Period, amounts: tuple[AmountStats, ...]) -> tuple[RefundTotals, ...]:
        """Refunds that went through in the period (each is an `order_refunded` event), per currency, and the
        period's payments net of them."""
        rows = await self._db.fetch(
            "SELECT currency, count(*) AS n, sum(amount_cents) AS total FROM analytics_events"
            " WHERE kind = 'order_refunded' AND occurred_at >= {} AND occurred_at <= {} GROUP BY currency",
            period.start,
            period.end,
        )
        refunded = {r["currency"]: (int(r["n"]), int(r["total"])) for r in rows}
        paid = {a.currency: a.sum.cents for a in amounts}
        return tuple(
            RefundTotals(
                refunds=refunded.get(currency, (0, 0))[0],
                refunded=Money(refunded.get(currency, (0, 0))[1], currency),
                net=Money(paid.get(currency, 0) - refunded.get(currency, (0, 0))[1], currency),
            )
            for currency in sorted(paid.keys() | refunded.keys())
        )

    async def _amounts(self, period: Period) -> tuple[AmountStats, ...]:
        # Every payment that succeeded is one order paid, however it was settled: at once, by the provider's
        # webhook, or by reconciliation after a charge call that timed out (whose attempt counts as errored).
        # So the amounts are the money taken, as the seller dashboard's revenue is.
        succeeded = (
            " FROM analytics_events WHERE kind = 'order_paid' AND occurred_at >= {} AND occurred_at <= {}"
        )
        sums = await self._db.fetch(
            f"SELECT currency, count(*) AS n, sum(amount_cents) AS total{succeeded} GROUP BY currency",
            period.start,
            period.end,
        )
        ranked = _percentiles(
            await self._db.fetch(
                _percentile_sql(f"SELECT currency AS grp, amount_cents AS value{succeeded}"),
                period.start,
                period.end,
            )
        )
        amounts = []
        for row in sorted(sums, key=lambda r: r["currency"]):
            count, values = ranked[row["currency"]]
            total, currency = int(row["total"]), row["currency"]
            amounts.append(
                AmountStats(
                    count=count,
                    sum=Money(total, currency),
                    mean=Money(round_half_up(Fraction(total, count)), currency),
                    p50=Money(round_half_up(percentile(count, 50, values)), currency),
                    p95=Money(round_half_up(percentile(count, 95, values)), currency),
                )
            )
        return tuple(amounts)

    @_planned_for_its_period
    async def carts(self, period: Period, abandon_after: timedelta, now: datetime) -> CartsReport:
        window = int(abandon_after.total_seconds())
        in_window = self._sql.not_later_than("co.occurred_at", "carts.last_add", window)
        rows = await self._db.fetch(
            "WITH carts AS (SELECT user_id, min(occurred_at) AS first_add, max(occurred_at) AS last_add"
            "  FROM analytics_events WHERE kind = 'cart_add' AND occurred_at >= {} AND occurred_at <= {}"
            "  AND user_id IS NOT NULL GROUP BY user_id),"
            " checkouts AS (SELECT user_id, occurred_at FROM analytics_events"
            "  WHERE kind = 'checkout_started' AND occurred_at >= {} AND occurred_at <= {}"
            "  AND user_id IS NOT NULL),"
            " outcome AS (SELECT carts.user_id, carts.last_add,"
            "  max(CASE WHEN co.user_id IS NULL THEN 0 ELSE 1 END) AS checked_out"
            "  FROM carts LEFT JOIN checkouts co ON co.user_id = carts.user_id"
            f"   AND co.occurred_at >= carts.first_add AND {in_window}"
            "  GROUP BY carts.user_id, carts.last_add)"
            " SELECT count(*) AS carts, coalesce(sum(checked_out), 0) AS checked_out,"
            " coalesce(sum(CASE WHEN checked_out = 0 AND last_add <= {} THEN 1 ELSE 0 END), 0) AS abandoned"
            " FROM outcome",
            period.start,
            period.end,
            period.start,
            period.end + abandon_after,
            now - abandon_after,
        )
        row = rows[0]
        carts, abandoned = int(row["carts"]), int(row["abandoned"])
        return CartsReport(
            start=period.start,
            end=period.end,
            carts_with_items=carts,
            checked_out=int(row["checked_out"]),
            abandoned=abandoned,
            abandonment_rate=rate(abandoned, carts),
            abandon_after_s=window,
        )

    @_planned_for_its_period
    async def sessions(self, period: Period) -> SessionsReport:
        split = await self._split(period)
        if split.days:
            return await self._sessions_rolled_up(period, split)
        # A rolled-up day's session seen on that day alone is taken as it is; the others (several days, or also
        # in the raw edges) are grouped by session.
        edge = (
            "edge AS (SELECT session_id, count(*) AS events, min(occurred_at) AS first_at,"
            f" max(occurred_at) AS last_at FROM analytics_events WHERE {_edges()}"
            " AND session_id IS NOT NULL GROUP BY session_id), "
        )
        days = "FROM analytics_session_days WHERE day >= {} AND day < {} AND "
        per_session = (
            f"SELECT events, {self._sql.seconds_between('first_at', 'last_at')} AS duration"
            f" {days}alone = 1 AND session_id NOT IN (SELECT session_id FROM edge)"
            " UNION ALL"
            " SELECT sum(events),"
            f" {self._sql.seconds_between('min(first_at)', 'max(last_at)')} FROM ("
            f"  SELECT session_id, events, first_at, last_at {days}"
            "  (alone = 0 OR session_id IN (SELECT session_id FROM edge))"
            "  UNION ALL SELECT session_id, events, first_at, last_at FROM edge) AS u GROUP BY session_id"
        )
        args = (
            *_edge_args(period, split),
            split.first_day,
            split.after_day,
            split.first_day,
            split.after_day,
        )
        if self._db.is_postgres:
            # One sort of the period's durations (percentile_cont interpolates as domain.percentile does),
            # where the window functions below took three passes over them.
            [row] = await self._db.fetch(
                f"WITH {edge}s AS ({per_session}) SELECT count(*) AS n, sum(events) AS events,"
                " percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP (ORDER BY duration) AS p FROM s",
                *args,
            )
            count = int(row["n"])
            if not count:
                return SessionsReport(period.start, period.end, 0, 0.0, 0.0, 0.0)
            median, p95 = (float(value) for value in row["p"])
            return SessionsReport(
                start=period.start,
                end=period.end,
                sessions=count,
                median_duration_s=round(median, 3),
                p95_duration_s=round(p95, 3),
                events_per_session=int(row["events"]) / count,
            )
        # One pass over the period's sessions gives the count, the events and the percentiles.
        rows = await self._db.fetch(
            _percentile_sql(
                f"SELECT 1 AS grp, duration AS value, sum(events) OVER () AS events FROM ({per_session}) AS s",
                ctes=edge,
            ),
            *args,
        )
        if not rows:
            return SessionsReport(period.start, period.end, 0, 0.0, 0.0, 0.0)
        count, values = _percentiles(rows)[1]
        return SessionsReport(
            start=period.start,
            end=period.end,
            sessions=count,
            median_duration_s=round(float(percentile(count, 50, values)), 3),
            p95_duration_s=round(float(percentile(count, 95, values)), 3),
            events_per_session=int(rows[0]["events"]) / count,
        )

    async def _sessions_rolled_up(self, period: Period, split: Split) -> SessionsReport:
        """The sessions report from the per-day sums of the rolled-up days (sessions alone on their day: their
        count, events and a histogram of their durations by whole second), corrected as the funnel is for the
        sessions grouped across days or with the raw edges. The percentiles are exact: the histogram says which
        buckets the ranks they lie between fall in, and only those buckets' durations are read (an index) and
        ranked. All of it in one statement: the grouped sessions (≈ a day of them when the raw tail edge is
        most of a day) stay in the database, only the few ranks wanted travel."""
        rolled = "day >= {} AND day < {}"
        duration = self._sql.seconds_between("first_at", "last_at")
        bucket = self.rollups.bucket_sql("first_at", "last_at")
        # The two ranks each percentile lies between (and the one below: PostgreSQL's 0.95 * (count - 1) is a
        # float, which may fall just under the exact position).
        steps = " UNION ALL ".join(
            f"SELECT {p} AS p, {step} AS step" for p in (50, 95) for step in (-1, 0, 1)
        )
        # The durations of the alone sessions in the wanted buckets (a few thousand rows each), through the bucket
        # index. On PostgreSQL a lateral subquery per bucket: joined to `wanted`, whose size the planner cannot
        # know, it scanned all the period's rows (0.3 s at 10 M events).
        alone_in_bucket = (
            f"SELECT {duration} AS duration FROM analytics_session_days WHERE {rolled} AND alone = 1"
            " AND session_id NOT IN (SELECT session_id FROM back)"
        )
        if self._db.is_postgres:
            bucket_values = (
                "SELECT wanted.bucket, d.duration FROM wanted CROSS JOIN LATERAL"
                f" ({alone_in_bucket} AND bucket = wanted.bucket OFFSET 0) AS d"  # OFFSET 0: not flattened
            )
        else:
            bucket_values = (
                f"SELECT bucket, {duration} AS duration FROM analytics_session_days"
                f" WHERE bucket IN (SELECT bucket FROM wanted) AND {rolled} AND alone = 1"
                " AND session_id NOT IN (SELECT session_id FROM back)"
            )
        rows = await self._db.fetch(
            "WITH edge AS (SELECT session_id, count(*) AS events, min(occurred_at) AS first_at,"
            "  max(occurred_at) AS last_at, max(CASE WHEN occurred_at >= {} THEN 1 ELSE 0 END) AS tail"
            f"  FROM analytics_events WHERE {_edges()} AND session_id IS NOT NULL GROUP BY session_id),"
            " back AS (SELECT session_id, events, first_at, last_at, bucket FROM analytics_session_days"
            f"  WHERE {rolled} AND alone = 1 AND session_id IN ({_coming_back(split)})),"
            f" grouped AS (SELECT events, {duration} AS duration, {bucket} AS bucket FROM ("
            "  SELECT session_id, sum(events) AS events, min(first_at) AS first_at, max(last_at) AS last_at"
            "  FROM (SELECT session_id, events, first_at, last_at FROM analytics_session_days"
            f"   WHERE {rolled} AND alone = 0"
            "   UNION ALL SELECT session_id, events, first_at, last_at FROM back"
            "   UNION ALL SELECT session_id, events, first_at, last_at FROM edge) AS u"
            "  GROUP BY session_id) AS g),"
            # The histogram of the period's durations: the rolled-up days', plus the grouped sessions, less the
            # alone rows of those coming back in the edges (they are among the grouped).
            " hist AS (SELECT bucket, sum(n) AS n FROM ("
            f"  SELECT bucket, sessions AS n FROM analytics_duration_days WHERE {rolled}"
            "  UNION ALL SELECT bucket, count(*) FROM grouped GROUP BY bucket"
            "  UNION ALL SELECT bucket, -count(*) FROM back GROUP BY bucket) AS h GROUP BY bucket),"
            " total AS (SELECT CAST((SELECT coalesce(sum(sessions), 0) FROM analytics_day_totals"
            f"   WHERE {rolled}) + (SELECT count(*) FROM grouped) - (SELECT count(*) FROM back) AS BIGINT) AS n,"
            "  CAST((SELECT coalesce(sum(events), 0) FROM analytics_day_totals"
            f"   WHERE {rolled}) + (SELECT coalesce(sum(events), 0) FROM grouped)"
            "   - (SELECT coalesce(sum(events), 0) FROM back) AS BIGINT) AS events),"
            " cum AS (SELECT bucket, n, sum(n) OVER (ORDER BY bucket) - n AS seen FROM hist WHERE n > 0),"
            f" ranks AS (SELECT DISTINCT (total.n - 1) * k.p / 100 + k.step AS rank FROM total, ({steps}) AS k"
            "  WHERE (total.n - 1) * k.p / 100 + k.step >= 0 AND (total.n - 1) * k.p / 100 + k.step < total.n),"
            # The buckets those ranks fall in, with how many shorter sessions come before each.
            " wanted AS (SELECT DISTINCT cum.bucket, cum.seen FROM cum JOIN ranks"
            "  ON ranks.rank >= cum.seen AND ranks.rank < cum.seen + cum.n),"
            f" vals AS ({bucket_values}"
            "  UNION ALL SELECT bucket, duration FROM grouped WHERE bucket IN (SELECT bucket FROM wanted)),"
            " ordered AS (SELECT wanted.seen + row_number() OVER (PARTITION BY vals.bucket ORDER BY vals.duration)"
            "  - 1 AS rank, vals.duration FROM vals JOIN wanted ON wanted.bucket = vals.bucket)"
            " SELECT total.n, total.events, ordered.rank, ordered.duration FROM total"
            " LEFT JOIN ordered ON ordered.rank IN (SELECT rank FROM ranks)",
            split.tail_start,
            *_edge_args(period, split),
            *(split.first_day, split.after_day) * 7,
        )
        count, total_events = int(rows[0]["n"]), int(rows[0]["events"])
        if not count:
            return SessionsReport(period.start, period.end, 0, 0.0, 0.0, 0.0)
        value_at = {int(row["rank"]): float(row["duration"]) for row in rows if row["rank"] is not None}
        if self._db.is_postgres:
            median, p95 = (_percentile_cont(count, fraction, value_at) for fraction in (0.5, 0.95))
        else:
            median, p95 = (float(percentile(count, p, value_at)) for p in (50, 95))
        return SessionsReport(
            start=period.start,
            end=period.end,
            sessions=count,
            median_duration_s=round(median, 3),
            p95_duration_s=round(p95, 3),
            events_per_session=total_events / count,
        )

    @_planned_for_its_period
    async def payments_by_day(self, period: Period) -> Sequence[PaymentsOnDay]:
        day = self._sql.day("occurred_at")
        rows = await self._db.fetch(
            f"SELECT {day} AS day,"
            f" sum(CASE WHEN {FINAL_PAYMENT_KIND} = 'payment_succeeded' THEN 1 ELSE 0 END) AS succeeded,"
            f" sum(CASE WHEN {FINAL_PAYMENT_KIND} = 'payment_succeeded' THEN 0 ELSE 1 END) AS failed"
            " FROM analytics_events a"
            " WHERE a.kind IN ('payment_succeeded', 'payment_declined', 'payment_errored')"
            " AND a.occurred_at >= {} AND a.occurred_at <= {}"
            f" GROUP BY {day} ORDER BY day",
            period.start,
            period.end,
        )
        return [PaymentsOnDay(r["day"], int(r["succeeded"]), int(r["failed"])) for r in rows]

    @_planned_for_its_period
    async def seller_dashboard(self, seller_id: str, period: Period) -> SellerDashboard:
        # Paid orders, refunded since or not: their refunds are taken off below (net revenue).
        paid_lines = (
            " FROM order_lines ol JOIN orders o ON o.id = ol.order_id"
            " WHERE ol.seller_id = {} AND o.status IN ('paid', 'partially_refunded', 'refunded')"
            " AND o.created_at >= {} AND o.created_at <= {}"
        )
        args = (seller_id, period.start, period.end)
        revenue = await self._db.fetch(
            "SELECT o.currency, count(DISTINCT o.id) AS orders, sum(ol.quantity) AS units,"
            f" sum(ol.quantity * ol.unit_price_cents) AS revenue{paid_lines} GROUP BY o.currency",
            *args,
        )
        sales = await self._db.fetch(
            "SELECT ol.item_id, ol.title, o.currency, sum(ol.quantity) AS units,"
            f" sum(ol.quantity * ol.unit_price_cents) AS revenue{paid_lines}"
            " GROUP BY ol.item_id, ol.title, o.currency",
            *args,
        )
        # The period's views of the seller's items and their distinct viewing sessions, per item and overall
        # (the item-less row), in one statement. The rolled-up days give per day and item (and per day) the
        # views of every session and the viewers alone on that day (a row an item a day, whatever the traffic);
        # the viewers seen on several days (few: crossing midnight) or also in the raw edges are counted
        # distinct from their view rows and edge events, and the latter's alone rows taken back out (`back`).
        split = await self._split(period)
        viewed = await self._db.fetch(
            "WITH edge AS (SELECT item_id, session_id, count(*) AS views,"
            " max(CASE WHEN occurred_at >= {} THEN 1 ELSE 0 END) AS tail FROM analytics_events"
            f" WHERE kind = 'item_viewed' AND seller_id = {{}} AND {_edges()} GROUP BY item_id, session_id),"
            " back AS (SELECT v.item_id, v.session_id FROM analytics_view_days v"
            "  JOIN analytics_session_days s ON s.day = v.day AND s.session_id = v.session_id AND s.alone = 1"
            "  WHERE v.seller_id = {} AND v.day >= {} AND v.day < {}"
            f"  AND v.session_id IN ({_coming_back(split)})),"
            " grouped AS (SELECT v.item_id, v.session_id FROM analytics_session_days s"
            "  JOIN analytics_view_days v ON v.session_id = s.session_id AND v.day = s.day"
            "  WHERE s.day >= {} AND s.day < {} AND s.alone = 0 AND v.seller_id = {}"
            "  UNION ALL SELECT item_id, session_id FROM back"
            "  UNION ALL SELECT item_id, session_id FROM edge),"
            " per_item AS (SELECT item_id, sum(views) AS views, sum(viewers) AS viewers FROM ("
            "  SELECT item_id, views, viewers FROM analytics_item_view_days"
            "  WHERE seller_id = {} AND day >= {} AND day < {}"
            "  UNION ALL SELECT item_id, views, 0 FROM edge"
            "  UNION ALL SELECT item_id, 0, -count(*) FROM back GROUP BY item_id"
            "  UNION ALL SELECT item_id, 0, count(DISTINCT session_id) FROM grouped GROUP BY item_id) AS x"
            "  GROUP BY item_id)"
            " SELECT p.item_id, i.title, i.currency, p.views, p.viewers FROM per_item p"
            " JOIN items i ON i.id = p.item_id"
            " UNION ALL"
            " SELECT NULL, NULL, NULL,"
            " (SELECT coalesce(sum(views), 0) FROM analytics_seller_view_days"
            "  WHERE seller_id = {} AND day >= {} AND day < {})"
            " + (SELECT coalesce(sum(views), 0) FROM edge),"
            " (SELECT coalesce(sum(viewers), 0) FROM analytics_seller_view_days"
            "  WHERE seller_id = {} AND day >= {} AND day < {})"
            " - (SELECT count(DISTINCT session_id) FROM back)"
            " + (SELECT count(DISTINCT session_id) FROM grouped)",
            split.tail_start,
            seller_id,
            *_edge_args(period, split),
            seller_id,
            *(split.first_day, split.after_day) * 3,
            seller_id,
            seller_id,
            split.first_day,
            split.after_day,
            seller_id,
            split.first_day,
            split.after_day,
            seller_id,
            split.first_day,
            split.after_day,
        )
        views = [r for r in viewed if r["item_id"] is not None]
        [totals] = [r for r in viewed if r["item_id"] is None]
        # A viewing session converted when it later paid, within the period, for an order holding the item
        # viewed (overall: holding any of the seller's items). Payments are far fewer than views: start from
        # the period's paid orders and look for a view before each in its session (the session index).
        paid_sql = (
            "SELECT {group} count(DISTINCT p.session_id) AS sessions FROM analytics_events p"
            " JOIN order_lines ol ON ol.order_id = p.order_id{match}"
            " WHERE p.kind = 'order_paid' AND p.occurred_at >= {{}} AND p.occurred_at <= {{}}"
            " AND EXISTS (SELECT 1 FROM analytics_events v WHERE v.session_id = p.session_id"
            "  AND v.kind = 'item_viewed' AND v.seller_id = {{}}{same_item}"
            "  AND v.occurred_at >= {{}} AND v.occurred_at <= p.occurred_at){group_by}"
        )
        per_item = await self._db.fetch(
            paid_sql.format(
                group="ol.item_id,",
                match="",
                same_item=" AND v.item_id = ol.item_id",
                group_by=" GROUP BY ol.item_id",
            ),
            period.start,
            period.end,
            seller_id,
            period.start,
        )
        overall = await self._db.fetch(
            paid_sql.format(group="", match=" AND ol.seller_id = {}", same_item="", group_by=""),
            seller_id,
            period.start,
            period.end,
            seller_id,
            period.start,
        )
        converted = {str(r["item_id"]): int(r["sessions"]) for r in per_item}
        viewed = {str(r["item_id"]): r for r in views}
        items: dict[tuple[str, str], SellerItemStats] = {}
        for row in sales:
            item_id = str(row["item_id"])
            seen = viewed.get(item_id)
            viewers = int(seen["viewers"]) if seen else 0
            items[(item_id, row["currency"])] = SellerItemStats(
                item_id=item_id,
                title=row["title"],
                units=int(row["units"]),
                revenue=Money(int(row["revenue"]), row["currency"]),
                views=int(seen["views"]) if seen else 0,
                conversion=rate(converted.get(item_id, 0), viewers),
            )
        sold = {item_id for item_id, _ in items}
        for item_id, row in viewed.items():
            if item_id not in sold:
                items[(item_id, row["currency"])] = SellerItemStats(
                    item_id, row["title"], 0, Money(0, row["currency"]), int(row["views"]), 0.0
                )
        top = sorted(items.values(), key=lambda s: (-s.units, -s.views, s.title, s.item_id))[:TOP]
        refund_count, refunded = await self._seller_refunds(seller_id, period)
        return SellerDashboard(
            start=period.start,
            end=period.end,
            revenue=tuple(
                Revenue(
                    revenue=Money(int(r["revenue"]), r["currency"]),
                    orders=int(r["orders"]),
                    units=int(r["units"]),
                    refunded=Money(refunded.get(r["currency"], 0), r["currency"]),
                    net_revenue=Money(int(r["revenue"]) - refunded.get(r["currency"], 0), r["currency"]),
                )
                for r in sorted(revenue, key=lambda r: r["currency"])
            ),
            refunds=refund_count,
            orders=sum(int(r["orders"]) for r in revenue),
            units=sum(int(r["units"]) for r in revenue),
            views=int(totals["views"]),
            conversion=rate(int(overall[0]["sessions"]), int(totals["viewers"])),
            top_items=tuple(top),
        )

    async def _seller_refunds(self, seller_id: str, period: Period) -> tuple[int, dict[str, int]]:
        """(how many refunds went through on the period's orders holding the seller's lines, the seller's share
        of them per currency). A refund is of the whole order: its sellers share what went back in proportion
        to their subtotals, in whole cents that add up to it (`proportional_shares`), never more than their
        subtotal."""
        rows = await self._db.fetch(
            "SELECT o.id, o.currency, l.seller_id, sum(l.quantity * l.unit_price_cents) AS subtotal,"
            " (SELECT count(*) FROM refunds r WHERE r.order_id = o.id AND r.status = 'succeeded') AS n,"
            " (SELECT coalesce(sum(r.amount_cents), 0) FROM refunds r"
            "  WHERE r.order_id = o.id AND r.status = 'succeeded') AS refunded"
            " FROM orders o JOIN order_lines l ON l.order_id = o.id"
            " WHERE o.status IN ('partially_refunded', 'refunded') AND o.created_at >= {} AND o.created_at <= {}"
            " AND EXISTS (SELECT 1 FROM order_lines m WHERE m.order_id = o.id AND m.seller_id = {})"
            " GROUP BY o.id, o.currency, l.seller_id",
            period.start,
            period.end,
            seller_id,
        )
        orders: dict[str, dict[str, Any]] = {}
        for row in rows:
            order = orders.setdefault(
                str(row["id"]),
                {"currency": row["currency"], "n": int(row["n"]), "refunded": 0, "subtotals": {}},
            )
            order["refunded"] = int(row["refunded"])
            order["subtotals"][str(row["seller_id"])] = int(row["subtotal"])
        shares: dict[str, int] = defaultdict(int)
        for order in orders.values():
            subtotals = order["subtotals"]
            refunded = min(order["refunded"], sum(subtotals.values()))
            shares[order["currency"]] += proportional_shares(refunded, subtotals)[str(seller_id)]
        return sum(order["n"] for order in orders.values()), dict(shares)

    async def prune(self, older_than: datetime) -> int:
        """Forget the events before `older_than`. On PostgreSQL (monthly partitions, m0006) the months that
        ended before it are dropped whole and only the rest of the boundary month is deleted row by row; the
        months ahead are created on the way. The rollups of the days pruned go with them (rollups.py)."""
        if self._db.is_postgres:
            await self.ensure_partitions(datetime.now(UTC))
        async with self._db.write_transaction(), self._db.long_statements():
            rows = await self._db.fetch(
                "SELECT count(*) AS n FROM analytics_events WHERE occurred_at < {}", older_than
            )
            if self._db.is_postgres:
                for name, _start, end in await self._partitions():
                    if end <= older_than:
                        await self._db.fetch(f'DROP TABLE "{name}"')
            await self._db.fetch("DELETE FROM analytics_events WHERE occurred_at < {}", older_than)
            await self.rollups.forget_before(older_than, events_deleted=int(rows[0]["n"]) > 0)
        return int(rows[0]["n"])

    async def _partitions(self) -> list[tuple[str, datetime, datetime]]:
        """The monthly partitions of analytics_events (name, first instant, first instant after), oldest first."""
        rows = await self._db.fetch(
            "SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = 'analytics_events'::regclass"
        )
        months = []
        for row in rows:
            match = _PARTITION.fullmatch(row["name"])
            if match:
                start = datetime(int(match[1]), int(match[2]), 1, tzinfo=UTC)
                months.append((row["name"], start, _next_month(start)))
        return sorted(months, key=lambda month: month[1])

    async def ensure_partitions(self, now: datetime, months_ahead: int = PARTITION_MONTHS_AHEAD) -> list[str]:
        """PostgreSQL: create the partitions of this month and the `months_ahead` next ones that are missing;
        returns their names. A month whose events already sit in the DEFAULT partition (a clock that was far
        off) is left there, logged: the reports and retention still see those rows."""
        if not self._db.is_postgres:
            return []
        existing = {name for name, _, _ in await self._partitions()}
        start = datetime(now.year, now.month, 1, tzinfo=UTC)
        created = []
        for _ in range(months_ahead + 1):
            name = f"analytics_events_{start:%Y%m}"
            end = _next_month(start)
            if name not in existing:
                try:
                    await self._db.fetch(
                        f'CREATE TABLE IF NOT EXISTS "{name}" PARTITION OF analytics_events'
                        f" FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')"
                    )
                    created.append(name)
                except Exception:
                    log.warning(
                        "cannot create the analytics partition", extra={"partition": name}, exc_info=True
                    )
            start = end
        return created


def _percentile_cont(count: int, fraction: float, value_at: Mapping[int, float]) -> float:
    """PostgreSQL's percentile_cont(fraction) of `count` sorted values, of which `value_at` holds (by 0-based rank)
    the two it lies between: the same float arithmetic, so that a report from the rollups gives the very figure
    the raw report's percentile_cont gives."""
    position = fraction * (count - 1)
    low, high = math.floor(position), math.ceil(position)
    if low == high:
        return value_at[low]
    return value_at[low] + (value_at[high] - value_at[low]) * (position - low)


def _next_month(start: datetime) -> datetime:
    return start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)
