"""Verify and restore agree: an archive with sound checksums whose database is not what its manifest says is
refused by both, and a refused restore leaves its target exactly as it was, whatever the target held."""

from __future__ import annotations

from pathlib import Path

import pytest

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
