"""PostgreSQL's partitioned `analytics_events` in backup manifests: each row counted once (in the partition
holding it), and archives whose manifest counted the partitioned table as well (written before) still verify
and restore, checked against those very counts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.backups import (
    Market,
    archive_members,
    fingerprint,
    one_line_failure,
    postgres_sql,
    seed,
    wipe,
    with_manifest_edited,
)

EVENTS = 90


@pytest.fixture
def market(fresh_postgres_url: str, tmp_path: Path) -> Market:
    """`market backup` on a PostgreSQL database with items and EVENTS analytics events over three months."""
    seed(fresh_postgres_url, items=20)
    postgres_sql(
        fresh_postgres_url,
        "INSERT INTO analytics_events (occurred_at, kind)"
        " SELECT now() - make_interval(days => g), 'item_viewed' FROM generate_series(1, $1) g",
        EVENTS,
    )
    return Market(fresh_postgres_url, tmp_path / "backups")


def _tables(archive: Path) -> dict[str, int]:
    return json.loads(archive_members(archive)["manifest.json"])["tables"]


def _analytics(tables: dict[str, int]) -> dict[str, int]:
    return {name: n for name, n in tables.items() if name.startswith("analytics_events")}


def test_the_rows_of_a_partitioned_table_are_counted_once_in_the_manifest(market: Market):
    archive = market.create()

    analytics = _analytics(_tables(archive))
    assert sum(analytics.values()) == EVENTS, analytics
    assert "analytics_events" not in analytics  # the partitioned table holds no rows of its own
    assert len(analytics) > 1  # every partition is there, each with its own count


def test_an_archive_whose_manifest_counted_the_partitioned_table_too_still_verifies_and_restores(
    market: Market,
):
    # What the code before wrote: the partitioned table beside its partitions, its rows counted twice.
    before = fingerprint(market.url)
    archive = market.create()
    old = archive.with_name("market-20260101T000000Z.tar.gz")
    with_manifest_edited(archive, old, lambda m: m["tables"].update(analytics_events=EVENTS))
    archive.unlink()

    market.ok("verify", str(old))
    wipe(market.url)
    restored = market.ok("restore", str(old), "--yes")

    assert "rows changed since the restore" not in restored.stderr
    assert fingerprint(market.url) == before


def test_an_old_manifest_s_count_of_the_partitioned_table_is_still_checked(market: Market):
    archive = market.create()
    wrong = archive.with_name("market-20260101T000000Z.tar.gz")
    with_manifest_edited(archive, wrong, lambda m: m["tables"].update(analytics_events=EVENTS + 1))

    line = one_line_failure(market("verify", str(wrong)))

    assert f"analytics_events: {EVENTS + 1} in the manifest, {EVENTS} restored" in line, line
