"""Analytics rollups (m0010): what the funnel, search, sessions reports and the seller dashboard need of a whole
UTC day, kept so that a 30-day report reads a few rows per session and query instead of every event.

- `analytics_session_days`: per day and session, its events, first and last instant, and which funnel steps it
  took that day (browsed, carted, started a checkout, paid). Distinct sessions do not sum across days, so each
  row also says whether its session is `alone` on its day (on no other day rolled up): those rows (nearly all)
  are counted as they are, and only the sessions seen on several days, or also in the raw edges of the
  period, are grouped by session. Rolling up a day marks the session's rows of other days too.
- `analytics_search_days`: per day and query, the searches, those with no results and those that succeeded
  (same session viewed an item or added one to its cart within SEARCH_SUCCESS_WINDOW after).
- `analytics_view_days`: per day, item and viewing session, the views (the seller dashboard's views and
  distinct viewers; its conversion starts from the period's few paid orders, on the raw events).

Written by a bounded background pass (`roll_up`, every MARKET_RECONCILE_INTERVAL in the service, at most
ROLLUP_DAYS_PER_PASS days a pass, newest first), never on the request path: a day is rolled up once it is
closed, CLOSE_DELAY after its end (by then every search of the day has had its success window and no
request that began in it is still writing). Reports read the rollups for the whole closed days of their period
and the raw events for the rest (the partial days at its ends, today, yesterday until its rollup), so their
figures are exact and as fresh as the events.

The days not rolled up yet (today, and yesterday until CLOSE_DELAY after midnight) are the raw edges of most
reports, and late in the UTC day the tail edge holds ≈ a day of sessions. Those that also have an `alone` row on
the rolled-up days must be taken back out of the sums, and looking each edge session up in the session index was
most of a 30-day report's time. So the pass also records the sessions it sees on the open days
(`analytics_open_sessions`, m0014; `mark_open`, from the events since its own id watermark), with the rolled-up day
each is alone on, if any: a report looks up only the edge sessions not recorded there (those of the last minutes)
or recorded with such a day (a session back from an earlier day). Rolling up a day treats the sessions recorded on
other days as it treats those rolled up there (not alone), and drops that day's records.

A late event (a bulk load, a clock that was off) written into a day already rolled up has an id above the
`analytics_rollup_state` watermark: a report reads that day raw, and the next pass rolls it up again
(delete and re-insert, in one transaction; idempotent). Retention (`SqlAnalyticsReports.prune`) deletes the
rollups of the days it pruned, and the next pass rolls the boundary day up again from what is left.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from market.domain.analytics import SEARCH_SUCCESS_WINDOW, Period

from .database import Database

log = logging.getLogger(__name__)

DAY = timedelta(days=1)
CLOSE_DELAY = SEARCH_SUCCESS_WINDOW + timedelta(minutes=30)
"""A day is rolled up this long after it ended: its last searches have had their success window."""
ROLLUP_DAYS_PER_PASS = 31
"""At most this many days rolled up per background pass (a backfill takes several passes)."""
BACKFILL_WORK_MEM = "256MB"
"""PostgreSQL memory each sort or hash of a backfill statement may use (run once, after a bulk load)."""
_LOCK_KEY = 0x616E_726F_6C6C  # PostgreSQL advisory lock: one pass at a time across workers and replicas
_OPEN_STATE = 2
"""The `analytics_rollup_state` row of `mark_open`'s watermark (row 1 is the day rollups')."""
ROLLUP_TABLES = (
    "analytics_session_days",
    "analytics_search_days",
    "analytics_view_days",
    "analytics_day_totals",
    "analytics_duration_days",
    "analytics_item_view_days",
    "analytics_seller_view_days",
)
_SESSION_STEPS = (
    "count(*), min(occurred_at), max(occurred_at),"
    " max(CASE WHEN kind IN ('item_viewed', 'search') THEN 1 ELSE 0 END),"
    " max(CASE WHEN kind = 'cart_add' THEN 1 ELSE 0 END),"
    " max(CASE WHEN kind = 'checkout_started' THEN 1 ELSE 0 END),"
    " max(CASE WHEN kind = 'order_paid' THEN 1 ELSE 0 END), 1"
)
"""A session's events, first and last instant and funnel steps over the rows grouped (alone = 1)."""


def day_of(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d")


def day_start(day: str) -> datetime:
    return datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=UTC)


def _midnight(moment: datetime) -> datetime:
    return day_start(day_of(moment))


@dataclass(frozen=True, slots=True)
class Split:
    """A period cut into the days the rollups answer for (`first_day` <= day < `after_day`, i.e. the instants
    [`head_end`, `tail_start`)) and the raw edges [period.start, head_end) and [tail_start, period.end]."""

    first_day: str
    after_day: str
    head_end: datetime
    tail_start: datetime
    head_rolled: bool = False
    """The head edge lies in one day that is rolled up too (and has no late event): a session seen there and on
    the rolled-up days is already `alone = 0` on them, so only the tail edge's sessions need looking up."""

    @staticmethod
    def raw(period: Period) -> Split:
        """No rollup: the whole period from the raw events."""
        return Split("", "", period.start, period.start)

    @property
    def days(self) -> int:
        return round((self.tail_start - self.head_end) / DAY)


class AnalyticsRollups:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._postgres = db.is_postgres

    def _day_sql(self, column: str) -> str:
        if self._postgres:
            return f"to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
        return f"substr({column}, 1, 10)"  # stored as UTC text by Piccolo's converter

    def _days_touched_sql(self) -> str:
        """The day of an event, and the day whose searches it may have made succeed (`before`: the same
        day, or the day before for an event less than SEARCH_SUCCESS_WINDOW after midnight)."""
        seconds = int(SEARCH_SUCCESS_WINDOW.total_seconds())
        if self._postgres:
            before = f"to_char((occurred_at - INTERVAL '{seconds} seconds') AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
        else:
            before = f"strftime('%Y-%m-%d', occurred_at, '-{seconds} seconds')"
        return f"{self._day_sql('occurred_at')} AS day, {before} AS before"

    def seconds_between(self, earlier: str, later: str) -> str:
        if self._postgres:
            return f"EXTRACT(EPOCH FROM ({later} - {earlier}))"
        return f"((julianday({later}) - julianday({earlier})) * 86400.0)"

    def bucket_sql(self, earlier: str, later: str) -> str:
        """The whole seconds of a duration: `analytics_duration_days`' buckets, and the session rows' `bucket`.
        Reports bucket a duration with this same expression, so that buckets order as the durations do."""
        if self._postgres:
            return f"floor({self.seconds_between(earlier, later)})::int"
        return f"CAST({self.seconds_between(earlier, later)} AS INTEGER)"

    def _engaged(self) -> str:
        seconds = int(SEARCH_SUCCESS_WINDOW.total_seconds())
        if self._postgres:
            return f"e.occurred_at <= s.occurred_at + INTERVAL '{seconds} seconds'"
        return f"julianday(e.occurred_at) <= julianday(s.occurred_at) + {seconds} / 86400.0"

    # --- reading: which days of a period the rollups answer for -------------------------------------------

    async def split(self, period: Period) -> Split:
        """The longest run of whole days of `period` that are rolled up and have no event written since."""
        first = _midnight(period.start)
        if first < period.start:
            first += DAY
        if first + DAY > period.end + timedelta(microseconds=1):
            return Split.raw(period)
        last = _midnight(period.end + timedelta(microseconds=1)) - DAY  # the last day ending by period.end
        head = first - DAY  # the day of the head edge, if the period does not start at a midnight
        rolled = {
            str(row["day"])
            for row in await self._db.fetch(
                "SELECT day FROM analytics_rollup_days WHERE day >= {} AND day <= {}",
                day_of(head),
                day_of(last),
            )
        }
        if not rolled:
            return Split.raw(period)
        rolled -= await self._late_days(head, last + DAY)
        best: tuple[datetime, datetime] | None = None
        run_start: datetime | None = None
        day = first
        while day <= last + DAY:
            if day <= last and day_of(day) in rolled:
                run_start = run_start or day
            elif run_start is not None:
                if best is None or day - run_start > best[1] - best[0]:
                    best = (run_start, day)
                run_start = None
            day += DAY
        if best is None:
            return Split.raw(period)
        head_rolled = best[0] == first and (first == period.start or day_of(head) in rolled)
        return Split(day_of(best[0]), day_of(best[1]), best[0], best[1], head_rolled)

    async def _late_days(self, start: datetime, end: datetime) -> set[str]:
        """Days in [start, end) whose rollup misses an event written after the last pass (or, for an event just
        after midnight, a search success of the evening before)."""
        rows = await self._db.fetch(
            f"SELECT DISTINCT {self._days_touched_sql()} FROM analytics_events"
            " WHERE id > coalesce((SELECT watermark FROM analytics_rollup_state WHERE id = 1), 0)"
            " AND occurred_at >= {} AND occurred_at < {}",
            start,
            end + SEARCH_SUCCESS_WINDOW,
        )
        return {str(row[column]) for row in rows for column in ("day", "before")}

    # --- writing ------------------------------------------------------------------------------------------

    async def roll_up(
        self, now: datetime, max_days: int = ROLLUP_DAYS_PER_PASS, kept_from: datetime | None = None
    ) -> list[str]:
        """One bounded pass: roll up again the days that received late events, then the closed days not yet
        rolled up, newest first, `max_days` at most. Returns the days rolled up. `kept_from`: the retention's
        cut-off; the day it falls in, which retention prunes a little more of at every pass, is left to the
        raw events rather than rolled up again and again."""
        closed_before = _midnight(now - CLOSE_DELAY)  # days that began before this are closed
        [state] = await self._db.fetch(
            "SELECT coalesce((SELECT watermark FROM analytics_rollup_state WHERE id = 1), 0) AS watermark,"
            " (SELECT max(id) FROM analytics_events) AS mark,"
            " (SELECT min(occurred_at) FROM analytics_events) AS oldest"
        )
        watermark, mark = int(state["watermark"]), int(state["mark"] or 0)
        if state["oldest"] is None:
            return []
        rolled = {str(r["day"]) for r in await self._db.fetch("SELECT day FROM analytics_rollup_days")}
        late: set[str] = set()
        if mark > watermark and rolled:
            rows = await self._db.fetch(
                f"SELECT DISTINCT {self._days_touched_sql()} FROM analytics_events"
                " WHERE id > {} AND id <= {} AND occurred_at < {}",
                watermark,
                mark,
                closed_before + SEARCH_SUCCESS_WINDOW,
            )
            late = {str(row[column]) for row in rows for column in ("day", "before")} & rolled
        oldest = _midnight(_as_datetime(state["oldest"]))
        if kept_from is not None:
            oldest = max(oldest, _midnight(kept_from) + DAY)
        missing = []
        day = closed_before - DAY
        while day >= oldest and len(missing) < max_days:
            if day_of(day) not in rolled:
                missing.append(day_of(day))
            day -= DAY
        todo = sorted(late, reverse=True)[:max_days]
        todo += [d for d in missing if d not in late][: max_days - len(todo)]
        done = []
        for day_text in todo:
            if await self.roll_up_day(day_text, now, only_if_missing=day_text not in late):
                done.append(day_text)
        if late <= set(done) and mark > watermark:
            await self._db.fetch(
                "INSERT INTO analytics_rollup_state (id, watermark) VALUES (1, {}) ON CONFLICT (id) DO UPDATE"
                " SET watermark = excluded.watermark WHERE analytics_rollup_state.watermark < excluded.watermark",
                mark,
            )
        if done and self._postgres:
            for table in ROLLUP_TABLES:  # fresh statistics: the reports' plans depend on these tables' sizes
                await self._db.fetch(f"ANALYZE {table}")
        await self.mark_open(now)  # after ANALYZE: its per-session look-up is planned from the statistics
        if done:
            log.info("analytics rolled up", extra={"days": len(done), "newest": done[0], "oldest": done[-1]})
        return done

    async def roll_up_day(self, day: str, now: datetime, *, only_if_missing: bool = False) -> bool:
        """(Re)compute the rollups of one UTC day from its events, in one transaction: idempotent. One
        worker at a time: False (nothing done) while another one is rolling up, or when `only_if_missing`
        and another worker has just rolled this day up."""
        start = day_start(day)
        end = start + DAY
        async with self._db.write_transaction(), self._db.long_statements():
            if self._postgres:
                [lock] = await self._db.fetch("SELECT pg_try_advisory_xact_lock({}) AS got", _LOCK_KEY)
                if not lock["got"]:
                    return False
            if only_if_missing and await self._db.fetch(
                "SELECT 1 AS done FROM analytics_rollup_days WHERE day = {}", day
            ):
                return False
            for table in ROLLUP_TABLES:
                await self._db.fetch(f"DELETE FROM {table} WHERE day = {{}}", day)
            await self._db.fetch(
                "INSERT INTO analytics_session_days"
                " (day, session_id, events, first_at, last_at, browsed, carted, started, paid, alone, bucket)"
                f" SELECT {{}}, session_id, {_SESSION_STEPS},"
                f" {self.bucket_sql('min(occurred_at)', 'max(occurred_at)')}"
                " FROM analytics_events WHERE occurred_at >= {} AND occurred_at < {}"
                " AND session_id IS NOT NULL GROUP BY session_id",
                day,
                start,
                end,
            )
            # A session rolled up on other days too is not alone, here nor on those days. (Its events on days
            # not rolled up yet are the raw edges of a report, which groups such sessions anyway; when such a
            # day is rolled up, this marks both.)
            await self._db.fetch(
                "UPDATE analytics_session_days SET alone = 0 WHERE day = {} AND EXISTS ("
                " SELECT 1 FROM analytics_session_days o WHERE o.session_id = analytics_session_days.session_id"
                " AND o.day <> {})",
                day,
                day,
            )
            # Nor is a session the pass has seen on a day not rolled up yet (mark_open); this day's own sessions
            # are rows now.
            await self._db.fetch(
                "UPDATE analytics_session_days SET alone = 0 WHERE day = {} AND alone = 1 AND session_id IN"
                " (SELECT session_id FROM analytics_open_sessions WHERE day <> {})",
                day,
                day,
            )
            await self._db.fetch("DELETE FROM analytics_open_sessions WHERE day = {}", day)
            await self._db.fetch(
                "UPDATE analytics_session_days SET alone = 0 WHERE alone = 1 AND day <> {} AND session_id IN"
                " (SELECT session_id FROM analytics_session_days WHERE day = {} AND alone = 0)",
                day,
                day,
            )
            # A search succeeded when the same session engaged within the window after it (the report's
            # definition; the engagement may fall in the next day, which is why a day waits CLOSE_DELAY).
            await self._db.fetch(
                "INSERT INTO analytics_search_days (day, query, searches, no_results, succeeded)"
                " SELECT {}, query, sum(n), sum(empty), sum(ok) FROM ("
                "  SELECT query, count(*) AS n, sum(CASE WHEN result_count = 0 THEN 1 ELSE 0 END) AS empty,"
                "   0 AS ok FROM analytics_events"
                "   WHERE kind = 'search' AND occurred_at >= {} AND occurred_at < {} GROUP BY query"
                "  UNION ALL"
                "  SELECT s.query, 0, 0, count(*) FROM analytics_events s"
                "   WHERE s.kind = 'search' AND s.occurred_at >= {} AND s.occurred_at < {}"
                "   AND s.result_count > 0 AND EXISTS (SELECT 1 FROM analytics_events e"
                "    WHERE e.session_id = s.session_id AND e.kind IN ('item_viewed', 'cart_add')"
                f"    AND e.occurred_at >= s.occurred_at AND {self._engaged()}"
                "    AND e.occurred_at >= {} AND e.occurred_at <= {})"
                "   GROUP BY s.query) AS q GROUP BY query",
                day,
                start,
                end,
                start,
                end,
                start,
                end + SEARCH_SUCCESS_WINDOW + timedelta(seconds=1),
            )
            await self._db.fetch(
                "INSERT INTO analytics_view_days (day, seller_id, item_id, session_id, views)"
                " SELECT {}, seller_id, item_id, session_id, count(*)"
                " FROM analytics_events WHERE kind = 'item_viewed' AND seller_id IS NOT NULL"
                " AND occurred_at >= {} AND occurred_at < {} GROUP BY seller_id, item_id, session_id",
                day,
                start,
                end,
            )
            [row] = await self._db.fetch(
                "SELECT count(*) AS n FROM analytics_events WHERE occurred_at >= {} AND occurred_at < {}",
                start,
                end,
            )
            # The per-day sums of the sessions alone on their day: this day's, and those of the days whose
            # sessions this one has just made not alone.
            others = await self._db.fetch(
                "SELECT DISTINCT day FROM analytics_session_days WHERE day <> {} AND session_id IN"
                " (SELECT session_id FROM analytics_session_days WHERE day = {} AND alone = 0)",
                day,
                day,
            )
            for total_day in (day, *sorted(str(r["day"]) for r in others)):
                await self._sum_day(total_day)
            await self._db.fetch("DELETE FROM analytics_rollup_days WHERE day = {}", day)
            await self._db.fetch(
                "INSERT INTO analytics_rollup_days (day, events, rolled_at) VALUES ({}, {}, {})",
                day,
                int(row["n"]),
                now,
            )
        return True

    async def mark_open(self, now: datetime) -> int:
        """The sessions of the events written since the last call, on the days not rolled up yet (from yesterday
        on: a day is rolled up CLOSE_DELAY after it ends), recorded in `analytics_open_sessions` with the rolled-up
        day they are alone on, if any (`alone_day`: a session back from an earlier day; rare). A report need not
        look up in the rollups the raw edge's sessions recorded there without one, only those seen since: late
        in the UTC day, ≈ a day of sessions fewer to look up. Nothing else changes here (no day's sums: a day
        rolled up later makes the sessions recorded on other days not alone on it, as `roll_up_day` does with
        those rolled up there). Part of the background pass; bounded (the events since the last pass; at most two
        days' on the first). Returns the sessions recorded.

        The watermark is an event id, as the day rollups' is: an event whose transaction commits after a higher
        id was seen is never recorded here, so its session is looked up, as before."""
        since = _midnight(now - CLOSE_DELAY) - DAY
        async with self._db.write_transaction(), self._db.long_statements():
            if self._postgres:
                [lock] = await self._db.fetch("SELECT pg_try_advisory_xact_lock({}) AS got", _LOCK_KEY)
                if not lock["got"]:
                    return 0
            [state] = await self._db.fetch(
                "SELECT coalesce((SELECT watermark FROM analytics_rollup_state WHERE id = {}), 0) AS watermark,"
                " (SELECT max(id) FROM analytics_events) AS mark",
                _OPEN_STATE,
            )
            watermark, mark = int(state["watermark"]), int(state["mark"] or 0)
            if mark <= watermark:
                return 0
            recorded = await self._db.fetch(
                "INSERT INTO analytics_open_sessions (day, session_id, alone_day)"
                " SELECT n.day, n.session_id, (SELECT min(d.day) FROM analytics_session_days d"
                "  WHERE d.session_id = n.session_id AND d.alone = 1)"
                f" FROM (SELECT DISTINCT {self._day_sql('occurred_at')} AS day, session_id FROM analytics_events"
                "  WHERE id > {} AND id <= {} AND occurred_at >= {} AND session_id IS NOT NULL) AS n"
                " WHERE n.day NOT IN (SELECT day FROM analytics_rollup_days) ON CONFLICT DO NOTHING"
                " RETURNING session_id",
                watermark,
                mark,
                since,
            )
            await self._db.fetch(
                "INSERT INTO analytics_rollup_state (id, watermark) VALUES ({}, {}) ON CONFLICT (id) DO UPDATE"
                " SET watermark = excluded.watermark",
                _OPEN_STATE,
                mark,
            )
        return len(recorded)

    async def backfill(self, now: datetime, chunk_days: int = 31, since: datetime | None = None) -> list[str]:
        """Roll up every closed day at once, set-based (one `INSERT ... SELECT ... GROUP BY day` per table and
        `chunk_days` days, a transaction each, then the sessions' `alone` and the per-day sums): what a bulk load
        wants, where the background pass would take a day at a time. Only into empty rollups (ValueError
        otherwise); what it writes equals what `roll_up` run until it has nothing left writes (a test compares
        them). `since`: only the days from the one it falls in (the older ones are left to the background pass,
        which rolls up the newest first). Returns the days rolled up, newest first."""
        if await self._db.fetch("SELECT day FROM analytics_rollup_days LIMIT 1"):
            raise ValueError("backfill needs empty rollups: the background pass keeps them up to date")
        closed_before = _midnight(now - CLOSE_DELAY)
        [state] = await self._db.fetch(
            "SELECT (SELECT max(id) FROM analytics_events) AS mark,"
            " (SELECT min(occurred_at) FROM analytics_events) AS oldest"
        )
        if state["oldest"] is None:
            return []
        oldest = _midnight(_as_datetime(state["oldest"]))
        if since is not None:
            oldest = max(oldest, _midnight(since))
        day_sql = self._day_sql("occurred_at")
        start = oldest
        while start < closed_before:
            end = min(start + chunk_days * DAY, closed_before)
            async with self._db.write_transaction(), self._db.long_statements():
                if self._postgres:  # a month's sessions grouped in memory rather than spilled to disk
                    await self._db.fetch(f"SET LOCAL work_mem = '{BACKFILL_WORK_MEM}'")
                await self._db.fetch(
                    "INSERT INTO analytics_session_days"
                    " (day, session_id, events, first_at, last_at, browsed, carted, started, paid, alone, bucket)"
                    f" SELECT {day_sql} AS day, session_id, {_SESSION_STEPS},"
                    f" {self.bucket_sql('min(occurred_at)', 'max(occurred_at)')}"
                    " FROM analytics_events WHERE occurred_at >= {} AND occurred_at < {}"
                    f" AND session_id IS NOT NULL GROUP BY {day_sql}, session_id",
                    start,
                    end,
                )
                s_day = self._day_sql("s.occurred_at")
                await self._db.fetch(
                    "INSERT INTO analytics_search_days (day, query, searches, no_results, succeeded)"
                    " SELECT day, query, sum(n), sum(empty), sum(ok) FROM ("
                    f"  SELECT {day_sql} AS day, query, count(*) AS n,"
                    "   sum(CASE WHEN result_count = 0 THEN 1 ELSE 0 END) AS empty, 0 AS ok FROM analytics_events"
                    "   WHERE kind = 'search' AND occurred_at >= {} AND occurred_at < {}"
                    f"   GROUP BY {day_sql}, query"
                    "  UNION ALL"
                    f"  SELECT {s_day}, s.query, 0, 0, count(*) FROM analytics_events s"
                    "   WHERE s.kind = 'search' AND s.occurred_at >= {} AND s.occurred_at < {}"
                    "   AND s.result_count > 0 AND EXISTS (SELECT 1 FROM analytics_events e"
                    "    WHERE e.session_id = s.session_id AND e.kind IN ('item_viewed', 'cart_add')"
                    f"    AND e.occurred_at >= s.occurred_at AND {self._engaged()}"
                    "    AND e.occurred_at >= {} AND e.occurred_at <= {})"
                    f"   GROUP BY {s_day}, s.query) AS q GROUP BY day, query",
                    start,
                    end,
                    start,
                    end,
                    start,
                    end + SEARCH_SUCCESS_WINDOW + timedelta(seconds=1),
                )
                await self._db.fetch(
                    "INSERT INTO analytics_view_days (day, seller_id, item_id, session_id, views)"
                    f" SELECT {day_sql}, seller_id, item_id, session_id, count(*)"
                    " FROM analytics_events WHERE kind = 'item_viewed' AND seller_id IS NOT NULL"
                    " AND occurred_at >= {} AND occurred_at < {}"
                    f" GROUP BY {day_sql}, seller_id, item_id, session_id",
                    start,
                    end,
                )
            start = end
        days = []
        day = closed_before - DAY
        while day >= oldest:
            days.append(day_of(day))
            day -= DAY
        async with self._db.write_transaction(), self._db.long_statements():
            if self._postgres:
                await self._db.fetch(f"SET LOCAL work_mem = '{BACKFILL_WORK_MEM}'")
            counts = {
                str(row["day"]): int(row["n"])
                for row in await self._db.fetch(
                    f"SELECT {day_sql} AS day, count(*) AS n FROM analytics_events"
                    f" WHERE occurred_at >= {{}} AND occurred_at < {{}} GROUP BY {day_sql}",
                    oldest,
                    closed_before,
                )
            }
            await self._db.fetch(
                "UPDATE analytics_session_days SET alone = 0 WHERE session_id IN (SELECT session_id"
                " FROM analytics_session_days GROUP BY session_id HAVING count(*) > 1)"
            )
            # The open days' sessions recorded so far (mark_open) were recorded before these rows existed (their
            # `alone_day`): recorded again below.
            await self._db.fetch("DELETE FROM analytics_open_sessions")
            await self._db.fetch("DELETE FROM analytics_rollup_state WHERE id = {}", _OPEN_STATE)
            await self._sum_days("day >= {}", ("",))
            for day_text in days:
                await self._db.fetch(
                    "INSERT INTO analytics_rollup_days (day, events, rolled_at) VALUES ({}, {}, {})",
                    day_text,
                    counts.get(day_text, 0),
                    now,
                )
            await self._db.fetch(
                "INSERT INTO analytics_rollup_state (id, watermark) VALUES (1, {}) ON CONFLICT (id) DO UPDATE"
                " SET watermark = excluded.watermark",
                int(state["mark"]),
            )
        if self._postgres:
            for table in ROLLUP_TABLES:
                await self._db.fetch(f"ANALYZE {table}")
        # After ANALYZE: planned on an empty table's statistics, its per-session look-up in the session rollups
        # ANDed the whole `alone` index into every probe (> 10 min at 100 M events, 1.76 M session rows).
        await self.mark_open(now)
        return days

    async def _sum_day(self, day: str) -> None:
        """(Re)compute the per-day sums (m0011) of `day` from its session and view rows (caller's transaction)."""
        for table in ROLLUP_TABLES[3:]:
            await self._db.fetch(f"DELETE FROM {table} WHERE day = {{}}", day)
        await self._sum_days("day = {}", (day,))

    async def _sum_days(self, where: str, args: tuple[object, ...]) -> None:
        """The per-day sums of the days `where` (on `day`) selects, from their session and view rows."""
        await self._db.fetch(
            "INSERT INTO analytics_day_totals (day, sessions, events, browsed, carted, started, paid)"
            " SELECT day, count(*), sum(events), sum(browsed), sum(browsed * carted),"
            " sum(browsed * carted * started), sum(browsed * carted * started * paid)"
            f" FROM analytics_session_days WHERE {where} AND alone = 1 GROUP BY day",
            *args,
        )
        await self._db.fetch(
            "INSERT INTO analytics_duration_days (day, bucket, sessions)"
            f" SELECT day, bucket, count(*) FROM analytics_session_days WHERE {where} AND alone = 1"
            " GROUP BY day, bucket",
            *args,
        )
        # A view row is one session's views of one item that day: the viewers alone on the day count as they
        # are (a row with no session, or of a session seen on other days too, adds its views only).
        alone = (
            " FROM analytics_view_days v LEFT JOIN analytics_session_days s"
            " ON s.day = v.day AND s.session_id = v.session_id AND s.alone = 1"
            f" WHERE {where.replace('day', 'v.day')}"
        )
        await self._db.fetch(
            "INSERT INTO analytics_item_view_days (day, seller_id, item_id, views, viewers)"
            " SELECT v.day, v.seller_id, v.item_id, sum(v.views), count(s.session_id)"
            f"{alone} AND v.item_id IS NOT NULL GROUP BY v.day, v.seller_id, v.item_id",
            *args,
        )
        await self._db.fetch(
            "INSERT INTO analytics_seller_view_days (day, seller_id, views, viewers)"
            f" SELECT v.day, v.seller_id, sum(v.views), count(DISTINCT s.session_id){alone}"
            " GROUP BY v.day, v.seller_id",
            *args,
        )

    async def forget_before(self, older_than: datetime, events_deleted: bool) -> None:
        """Retention: drop the rollups of the days that began before `older_than` (the boundary day only when
        some of its events were deleted: it is rolled up again from the rest). In the caller's transaction."""
        boundary = day_of(older_than)
        op = "<=" if events_deleted and _midnight(older_than) < older_than else "<"
        for table in (*ROLLUP_TABLES, "analytics_rollup_days", "analytics_open_sessions"):
            await self._db.fetch(f"DELETE FROM {table} WHERE day {op} {{}}", boundary)


def _as_datetime(value: object) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(value)).astimezone(UTC)
