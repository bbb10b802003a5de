"""Verify and restore agree: an archive with sound checksums whose database is not what its manifest says (other
row counts, a schema this market does not know, not a market database at all) is refused by both, and a refused
restore leaves its target exactly as it was, whatever the target held."""

from __future__ import annotations

from pathlib import Path

import pytest

from market.adapters.db.migrations import HEAD, MIGRATIONS
from market.ops.backups.archive import verified_marker
from tests.support.backups import (
    Market,
    fingerprint,
    migrate,
    one_line_failure,
    scratch_databases,
    seed,
    with_manifest_edited,
)

TARGETS = {
    # How the target is prepared, and what restore needs to replace it.
    "schema-only": (migrate, ["--yes"]),
    "with-rows": (lambda url: seed(url, sellers=1, items=20), ["--force", "--yes"]),
}


def _refused_by_verify_and_restore(market: Market, archive: Path, target: str) -> list[str]:
    """Both commands' one-line refusals, after checking the target and the directory are as they were."""
    prepare, restore_options = TARGETS[target]
    prepare(market.url)
    before = fingerprint(market.url)

    lines = [
        one_line_failure(market("verify", str(archive))),
        one_line_failure(market("restore", str(archive), *restore_options)),
    ]

    assert "was not changed" in lines[1], lines[1]
    assert fingerprint(market.url) == before
    assert not verified_marker(archive).exists()
    assert [p.name for p in market.directory.iterdir()] == [archive.name]  # no work files left
    if market.url.startswith("postgresql"):
        assert not any(name.startswith(market.url.rpartition("/")[2]) for name in scratch_databases())
    return lines


@pytest.mark.parametrize("target", TARGETS)
def test_an_archive_whose_row_counts_differ_from_its_manifest_is_refused_and_restores_nothing(
    market: Market, engine: str, good_archives: dict[str, Path], target: str
):
    market.directory.mkdir()
    archive = market.directory / good_archives[engine].name
    with_manifest_edited(good_archives[engine], archive, lambda m: m["tables"].update(users=999))

    for line in _refused_by_verify_and_restore(market, archive, target):
        assert "row counts differ from the manifest" in line and "users: 999 in the manifest" in line, line


@pytest.mark.parametrize("target", TARGETS)
def test_an_archive_of_a_schema_this_market_does_not_know_is_refused_by_verify_and_restore(
    market: Market, engine: str, good_archives: dict[str, Path], target: str
):
    # The `market` command tells the backup wing which schema versions exist (it does not import them).
    market.directory.mkdir()
    archive = market.directory / good_archives[engine].name
    with_manifest_edited(
        good_archives[engine], archive, lambda m: m.update(migration_head="9999_from_the_future")
    )

    for line in _refused_by_verify_and_restore(market, archive, target):
        assert "its schema (9999_from_the_future) is newer than this market knows" in line, line


@pytest.mark.parametrize("claimed_head", [None, HEAD], ids=["as-made", "claiming-the-head"])
@pytest.mark.parametrize("target", TARGETS)
def test_an_archive_of_a_database_that_is_not_market_s_is_refused_by_verify_and_restore(
    market: Market, engine: str, foreign_archives: dict[str, Path], target: str, claimed_head: str | None
):
    market.directory.mkdir()
    archive = market.directory / foreign_archives[engine].name
    with_manifest_edited(foreign_archives[engine], archive, lambda m: m.update(migration_head=claimed_head))

    for line in _refused_by_verify_and_restore(market, archive, target):
        assert "not a market database" in line, line


@pytest.mark.parametrize("target", TARGETS)
def test_an_archive_whose_migrations_table_is_not_market_s_is_refused_in_one_plain_line(
    market: Market, engine: str, foreign_ledger_archives: dict[str, Path], target: str
):
    # Its market_migrations has no `version` column: reading the ledger fails in the database driver, which
    # must be a verdict on the archive, not the driver's exception class.
    market.directory.mkdir()
    archive = market.directory / foreign_ledger_archives[engine].name
    with_manifest_edited(foreign_ledger_archives[engine], archive, lambda m: m.update(migration_head=HEAD))

    for line in _refused_by_verify_and_restore(market, archive, target):
        assert f"market: {archive.name}: " in line and "not a market database" in line, line
        assert "Error" not in line, line


@pytest.mark.parametrize("target", TARGETS)
def test_an_archive_whose_manifest_names_another_schema_version_than_its_database_is_refused(
    market: Market, engine: str, good_archives: dict[str, Path], target: str
):
    older = MIGRATIONS[-2].version  # known to this market, but not what the database in the archive is at
    market.directory.mkdir()
    archive = market.directory / good_archives[engine].name
    with_manifest_edited(good_archives[engine], archive, lambda m: m.update(migration_head=older))

    for line in _refused_by_verify_and_restore(market, archive, target):
        assert f"latest {HEAD}) is not that of schema version {older}" in line, line
