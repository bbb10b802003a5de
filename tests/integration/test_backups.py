"""`market backup` end to end on both engines: the round trip (create, lose everything, restore, compare
every table's rows and content), verify, list, and restore's rules about non-empty targets."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from market.ops.backups.archive import verified_marker
from tests.support.backups import (
    ITEMS,
    SELLERS,
    Market,
    accepted,
    business_fingerprint,
    change_password_of,
    fingerprint,
    migrate,
    one_line_failure,
    scratch_databases,
    seed,
    sign_in,
    sign_out_everywhere_as,
    user_ids,
    wipe,
)

CARRY_NOTICE = "held no accounts before the restore"


def test_round_trip_create_lose_everything_restore_gives_back_every_row(market: Market, engine: str):
    seed(market.url)
    before = fingerprint(market.url)
    assert before["items"][0] == ITEMS and before["users"][0] == SELLERS

    archive = market.create()
    wipe(market.url)
    result = market.ok("restore", str(archive), "--yes")

    assert "restored" in result.stdout
    assert fingerprint(market.url) == before
    # Into a new database: no token versions to carry over, and the operator is told so.
    assert CARRY_NOTICE in result.stdout


def test_create_writes_a_manifest_describing_the_snapshot(market: Market, engine: str):
    seed(market.url)
    archive = market.create()

    with tarfile.open(archive) as tar:
        assert tar.getnames()[0] == "manifest.json"
        manifest = json.load(tar.extractfile("manifest.json"))
        payload = tar.getnames()[1]
    from market import __version__
    from market.adapters.db.migrations import HEAD

    assert manifest["engine"] == engine
    assert manifest["format_version"] == 1
    assert manifest["migration_head"] == HEAD
    assert manifest["app_version"] == __version__
    assert manifest["created_at"].endswith("Z") and archive.name == (
        "market-" + manifest["created_at"].replace("-", "").replace(":", "") + ".tar.gz"
    )
    counts = {name: rows for name, (rows, _) in fingerprint(market.url).items()}
    assert manifest["tables"] == {name: counts[name] for name in manifest["tables"]}
    assert {"users", "items", "market_migrations"} <= set(manifest["tables"])
    unlisted = set(counts) - set(manifest["tables"])
    if engine == "postgresql":
        # A partitioned table holds no rows of its own: they are counted in its partitions.
        assert unlisted == {"analytics_events"}
    else:
        # SQLite's full-text index is derived data, restored with the file but not counted.
        assert all(name.startswith("items_fts") for name in unlisted)
    assert list(manifest["files"]) == [payload]
    assert payload == ("database.dump" if engine == "postgresql" else "database.sqlite3")
    # Nothing else in the directory: no temporary file, no work directory.
    assert sorted(p.name for p in market.directory.iterdir()) == [archive.name]


def test_verify_restores_into_a_scratch_database_and_marks_the_archive(market: Market, engine: str):
    seed(market.url, items=300)
    first = market.create()
    market.ok("list")
    before = fingerprint(market.url)

    result = market.ok("verify", "--latest")

    assert f"verified {first}" in result.stdout
    marker = json.loads(verified_marker(first).read_text())
    assert marker["tables"]["items"] == 300
    assert fingerprint(market.url) == before  # verify never touches the configured database
    if engine == "postgresql":
        assert not any(name.startswith(market.url.rpartition("/")[2]) for name in scratch_databases())
    assert sorted(p.name for p in market.directory.iterdir()) == sorted(
        [first.name, verified_marker(first).name]
    )
    listing = market.ok("list").stdout.splitlines()
    assert listing[0].split() == ["NAME", "CREATED", "AGE", "SIZE", "VERIFIED"]
    assert listing[1].startswith(first.name) and listing[1].endswith("yes")


def test_restore_into_a_database_holding_only_the_schema_needs_no_force(market: Market, engine: str):
    seed(market.url, items=300)
    before = fingerprint(market.url)
    archive = market.create()
    wipe(market.url)
    migrate(market.url)  # e.g. the service started once against the new, empty database

    market.ok("restore", str(archive), "--yes")

    assert fingerprint(market.url) == before


def test_restore_refuses_a_database_with_rows_unless_forced(market: Market, engine: str):
    seed(market.url, items=300)
    wanted = business_fingerprint(market.url)
    archive = market.create()
    seed(market.url, sellers=1, items=7)  # later writes the restore must undo
    current = fingerprint(market.url)

    refused = one_line_failure(market("restore", str(archive), "--yes"))
    assert "is not empty" in refused and "--force" in refused
    assert fingerprint(market.url) == current

    declined = market("restore", str(archive), "--force", input="n\n")
    assert declined.exit_code != 0
    assert fingerprint(market.url) == current

    market.ok("restore", str(archive), "--force", input="y\n")
    assert business_fingerprint(market.url) == wanted


def test_restore_keeps_tokens_revoked_after_the_backup_revoked_and_valid_tokens_valid(
    market: Market, engine: str
):
    seed(market.url, sellers=4, items=10)
    signed_out, changed_password, twice, untouched = user_ids(market.url)
    before_backup = {user_id: sign_in(market.url, user_id) for user_id in user_ids(market.url)}
    archive = market.create()
    sign_out_everywhere_as(market.url, signed_out)
    change_password_of(market.url, changed_password)
    sign_out_everywhere_as(market.url, twice)
    between = sign_in(market.url, twice)  # revoked by the second sign-out
    sign_out_everywhere_as(market.url, twice)
    after = {user_id: sign_in(market.url, user_id) for user_id in user_ids(market.url)}

    result = market.ok("restore", str(archive), "--force", "--yes")

    assert CARRY_NOTICE not in result.stdout
    for user_id in (signed_out, changed_password, twice):
        assert not accepted(market.url, before_backup[user_id])
    assert not accepted(market.url, between)
    assert accepted(market.url, before_backup[untouched])
    assert all(accepted(market.url, token) for token in after.values())


def test_verify_needs_a_file_or_latest(market: Market):
    assert market("verify").exit_code == 2
    assert "no backups in" in one_line_failure(market("verify", "--latest"))
    missing = one_line_failure(market("verify", str(market.directory / "market-20260101T000000Z.tar.gz")))
    assert "no such backup file" in missing


@pytest.mark.parametrize("command", [["list"], ["prune", "--dry-run"]])
def test_list_and_prune_on_an_empty_directory_say_so(market: Market, command: list[str]):
    assert market.ok(*command).stdout.strip()


@pytest.mark.parametrize("command", [["list"], ["prune", "--dry-run"], ["prune"], ["verify", "--latest"]])
def test_a_backup_directory_that_is_a_file_fails_in_one_line_instead_of_saying_no_backups(
    market: Market, command: list[str]
):
    market.directory.write_bytes(b"a file where the backups should be\n")

    line = one_line_failure(market(*command))

    assert line == f"market: the backup directory {market.directory} is not a directory", line
    assert market.directory.read_bytes() == b"a file where the backups should be\n"


@pytest.mark.parametrize("options", [["--yes"], ["--force", "--yes"]])
def test_restore_into_a_file_that_is_no_sqlite_database_fails_in_one_plain_line_and_leaves_it(
    good_archives: dict[str, Path], tmp_path: Path, options: list[str]
):
    target = tmp_path / "notes.db"
    target.write_bytes(b"not a database, an operator's notes\n" * 200)
    market = Market(f"sqlite:///{target}", tmp_path / "backups")

    line = one_line_failure(market("restore", str(good_archives["sqlite"]), *options))

    assert line.startswith("market: ") and "Error" not in line, line
    assert "file is not a database" in line and "was not changed" in line, line
    assert target.read_bytes() == b"not a database, an operator's notes\n" * 200
