"""PostgreSQL: analytics_events partitioned by month (m0006). Existing events move into their months with their
ids, new ones keep counting; retention drops the months that ended before the cut-off and deletes only the rest
of the boundary month; the reports see every partition, the DEFAULT one included. SQLite keeps one table."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from market.adapters.db.analytics import PARTITION_MONTHS_AHEAD, SqlAnalyticsLog, SqlAnalyticsReports
from market.adapters.db.database import Database
from market.adapters.db.migrations import MIGRATIONS
from market.adapters.db.migrations.runner import apply_migrations
from market.domain.analytics import Period
from market.domain.events import SearchPerformed
from tests.support.database import count, open_database


@pytest.fixture
async def pg(fresh_postgres_url: str) -> AsyncIterator[Database]:
    database = open_database(fresh_postgres_url)
    await database.start()
    try:
        yield database
    finally:
        await database.close()


async def partitions(db: Database) -> list[str]:
    rows = await db.fetch(
        "SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = 'analytics_events'::regclass ORDER BY 1"
    )
    return [row["name"] for row in rows]


def month_name(moment: datetime) -> str:
    return f"analytics_events_{moment:%Y%m}"


def months_from(start: datetime, n: int) -> list[datetime]:
    out, current = [], start.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    for _ in range(n):
        out.append(current)
        current = (current + timedelta(days=32)).replace(day=1)
    return out


async def search_at(db: Database, moment: datetime, text: str = "mug") -> None:
    await SqlAnalyticsLog(db).record([SearchPerformed(text, 1)], moment)


async def test_existing_events_move_into_their_months_keeping_ids_and_new_ids_follow(pg):
    partitioning = next(i for i, m in enumerate(MIGRATIONS) if m.version == "0006_analytics_partitions")
    await apply_migrations(pg.engine, MIGRATIONS[:partitioning])  # the schema before m0006
    now = datetime.now(UTC)
    old = now.replace(day=1) - timedelta(days=70)  # two or three months back
    await search_at(pg, old, "old")
    await search_at(pg, now, "new")
    before = await pg.fetch("SELECT id, query FROM analytics_events ORDER BY id")

    assert await pg.migrate() == [m.version for m in MIGRATIONS[partitioning:]]

    [kind] = await pg.fetch("SELECT relkind::text AS k FROM pg_class WHERE relname = 'analytics_events'")
    assert kind["k"] == "p"
    names = await partitions(pg)
    expected = {month_name(m) for m in months_from(old, 1)} | {
        month_name(m) for m in months_from(now, PARTITION_MONTHS_AHEAD + 1)
    }
    assert expected <= set(names) and "analytics_events_default" in names
    after = await pg.fetch("SELECT id, query FROM analytics_events ORDER BY id")
    assert [tuple(r.values()) for r in after] == [tuple(r.values()) for r in before]
    placed = await pg.fetch("SELECT tableoid::regclass::text AS part, query FROM analytics_events")
    assert {r["query"]: r["part"] for r in placed} == {"old": month_name(old), "new": month_name(now)}
    await search_at(pg, now, "later")
    ids = await pg.fetch("SELECT id FROM analytics_events WHERE query = 'later'")
    assert ids[0]["id"] > max(r["id"] for r in before)


async def test_retention_drops_whole_months_and_deletes_only_the_rest_of_the_boundary_month(pg):
    await pg.migrate()
    reports = SqlAnalyticsReports(pg)
    now = datetime.now(UTC)
    # Four months back, each with its partition, plus a stray event far in the past (the DEFAULT partition).
    months = months_from(now.replace(day=1) - timedelta(days=100), 4)
    for month in months:
        await pg.fetch(
            f'CREATE TABLE IF NOT EXISTS "{month_name(month)}" PARTITION OF analytics_events'
            f" FOR VALUES FROM ('{month.isoformat()}') TO ('{(month + timedelta(days=32)).replace(day=1).isoformat()}')"
        )
        await search_at(pg, month + timedelta(days=1))
        await search_at(pg, month + timedelta(days=20))
    await search_at(pg, datetime(2001, 1, 1, tzinfo=UTC), "stray")
    assert await count(pg, "analytics_events_default") == 1

    cutoff = months[2] + timedelta(days=10)  # whole months 0 and 1 go; month 2 keeps its day-20 event
    assert await reports.prune(cutoff) == 6  # 2 + 2 + 1 of month 2 + the stray one
    names = await partitions(pg)
    assert month_name(months[0]) not in names and month_name(months[1]) not in names
    assert month_name(months[2]) in names and month_name(months[3]) in names
    assert await count(pg, "analytics_events") == 3
    for month in months_from(now, PARTITION_MONTHS_AHEAD + 1):
        assert month_name(month) in names  # kept ready ahead

    period = Period(months[2], now + timedelta(days=1))
    assert (await reports.search(period)).searches == 3
    assert await reports.prune(cutoff) == 0


async def test_sqlite_keeps_one_plain_table(fresh_sqlite_url):
    db = open_database(fresh_sqlite_url)
    await db.start()
    try:
        await db.migrate()
        tables = await db.fetch(
            "SELECT name FROM sqlite_master WHERE name LIKE 'analytics_events%' AND type = 'table'"
        )
        assert [t["name"] for t in tables] == ["analytics_events"]
        assert await SqlAnalyticsReports(db).ensure_partitions(datetime.now(UTC)) == []
    finally:
        await db.close()
