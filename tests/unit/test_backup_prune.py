"""Retention: which backups `prune` deletes, judged by the manifest's created_at (time travel through an
injected clock), never the newest verified one."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from market.cli import main
from market.config import DatabaseURL
from market.ops.backups.archive import verified_marker, write_archive
from market.ops.backups.errors import BackupError
from market.ops.backups.manifest import FORMAT_VERSION, Manifest, archive_name
from market.ops.backups.service import BackupService

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
RETENTION_DAYS = 30


def _make_backup(directory: Path, created_at: datetime, *, verified: bool = False) -> Path:
    work = directory / "payload"
    work.mkdir(exist_ok=True)
    payload = work / "database.sqlite3"
    payload.write_bytes(b"SQLite format 3\x00" + created_at.isoformat().encode())
    manifest = Manifest(
        format_version=FORMAT_VERSION,
        created_at=created_at,
        engine="sqlite",
        server_version="3.40.1",
        database="market.db",
        migration_head="0001_initial",
        app_version="0.1.0",
        duration_s=0.1,
        tables={"items": 1},
        files={payload.name: hashlib.sha256(payload.read_bytes()).hexdigest()},
    )
    path = directory / archive_name(created_at)
    write_archive(path, manifest, work)
    payload.unlink()
    work.rmdir()
    if verified:
        _mark_verified(path, manifest)
    # The file times say "new" for all: only the manifest's created_at may decide.
    os.utime(path, (NOW.timestamp(), NOW.timestamp()))
    return path


def _mark_verified(path: Path, manifest: Manifest) -> None:
    """The marker `verify` writes (the fields that tie it to its archive)."""
    marker = {"archive": path.name, "archive_bytes": path.stat().st_size, "files": manifest.files}
    verified_marker(path).write_text(json.dumps(marker))


def _service(directory: Path, now: datetime = NOW) -> BackupService:
    return BackupService(
        DatabaseURL.parse(f"sqlite:///{directory / 'unused.db'}"),
        directory,
        retention_days=RETENTION_DAYS,
        clock=lambda: now,
    )


def _ages(days: dict[str, float], directory: Path, verified: set[str] = frozenset()) -> dict[str, Path]:
    return {
        label: _make_backup(directory, NOW - timedelta(days=age), verified=label in verified)
        for label, age in days.items()
    }


def _names(paths: list[Path]) -> set[str]:
    return {p.name for p in paths}


def test_backups_older_than_the_retention_are_deleted_except_the_newest_verified(tmp_path):
    backups = _ages(
        {
            "today": 0,
            "day10": 10,
            "day29.9": 29.9,
            "day30.1": 30.1,
            "day45": 45,
            "day60": 60,
            "day90": 90,
        },
        tmp_path,
        verified={"day45", "day90"},
    )
    result = _service(tmp_path).prune()

    expected_kept = {"today", "day10", "day29.9", "day45"}  # day45: the newest verified one
    assert _names([i.path for i in result.kept]) == {backups[k].name for k in expected_kept}
    assert _names([i.path for i in result.deleted]) == {
        backups[k].name for k in ("day30.1", "day60", "day90")
    }
    left = {p.name for p in tmp_path.iterdir()}
    assert left == {backups[k].name for k in expected_kept} | {verified_marker(backups["day45"]).name}


def test_a_verified_backup_within_the_retention_lets_older_verified_ones_go(tmp_path):
    backups = _ages({"day5": 5, "day40": 40, "day50": 50}, tmp_path, verified={"day5", "day40"})
    result = _service(tmp_path).prune()
    assert _names([i.path for i in result.kept]) == {backups["day5"].name}
    assert not verified_marker(backups["day40"]).exists()


def test_exactly_at_the_retention_limit_a_backup_is_kept(tmp_path):
    backups = _ages({"limit": RETENTION_DAYS}, tmp_path)
    assert _names([i.path for i in _service(tmp_path).prune().kept]) == {backups["limit"].name}


def test_time_travel_the_same_backups_expire_as_the_clock_moves(tmp_path):
    backups = _ages({"a": 0, "b": 5}, tmp_path)
    assert _service(tmp_path, NOW + timedelta(days=25)).prune(dry_run=True).deleted == []
    later = _service(tmp_path, NOW + timedelta(days=25, seconds=1)).prune(dry_run=True)
    assert _names([i.path for i in later.deleted]) == {backups["b"].name}
    much_later = _service(tmp_path, NOW + timedelta(days=400)).prune()
    assert _names([i.path for i in much_later.deleted]) == {backups["a"].name, backups["b"].name}
    assert list(tmp_path.iterdir()) == []


def test_dry_run_deletes_nothing(tmp_path):
    _ages({"old": 100, "new": 1}, tmp_path)
    before = sorted(tmp_path.iterdir())
    result = _service(tmp_path).prune(dry_run=True)
    assert len(result.deleted) == 1
    assert sorted(tmp_path.iterdir()) == before


def test_an_unreadable_archive_is_never_deleted_and_stale_leftovers_are(tmp_path):
    _ages({"old": 100}, tmp_path)
    unreadable = tmp_path / archive_name(NOW - timedelta(days=365))
    unreadable.write_bytes(b"garbage")
    stale = tmp_path / ".market-20261101T030000Z.tar.gz.abcd.partial"
    stale.mkdir()
    os.utime(stale, ((NOW - timedelta(days=2)).timestamp(),) * 2)
    fresh = tmp_path / ".market-20261128T115900Z.tar.gz.ef01.partial"  # a backup being written right now
    fresh.write_bytes(b"...")
    os.utime(fresh, (NOW.timestamp(),) * 2)

    result = _service(tmp_path).prune()

    assert [i.path for i in result.skipped] == [unreadable]
    assert result.leftovers == [stale]
    assert unreadable.exists() and fresh.exists() and not stale.exists()


@pytest.mark.parametrize("dry_run", [True, False])
def test_the_prune_command_reports_what_it_deletes(tmp_path, dry_run):
    # The real clock: a backup from 2000 is old by any retention.
    old = _make_backup(tmp_path, datetime(2000, 1, 1, tzinfo=UTC))
    new = _make_backup(tmp_path, datetime.now(UTC) - timedelta(minutes=5))
    env = {
        "MARKET_DATABASE_URL": f"sqlite:///{tmp_path / 'unused.db'}",
        "MARKET_BACKUP_DIR": str(tmp_path),
        "MARKET_BACKUP_RETENTION_DAYS": "7",
    }
    result = CliRunner().invoke(main, ["backup", "prune", *(["--dry-run"] if dry_run else [])], env=env)
    assert result.exit_code == 0, result.output
    assert f"{'would delete' if dry_run else 'deleted'} {old}" in result.stdout
    assert old.exists() is dry_run
    assert new.exists()


def test_a_marker_that_is_not_its_archive_s_does_not_make_it_verified(tmp_path):
    # day60 is the only backup a restore was tested of. day40's marker is day60's, copied beside it (or day40
    # was replaced by another file after its verify): neither may make day40 "the newest verified one" and
    # let prune delete day60, the last backup known to restore.
    backups = _ages({"day40": 40, "day60": 60}, tmp_path, verified={"day60"})
    verified_marker(backups["day40"]).write_bytes(verified_marker(backups["day60"]).read_bytes())
    (tmp_path / "other").mkdir()
    replaced = _make_backup(tmp_path / "other", NOW - timedelta(days=50), verified=True)
    backups["day50"] = tmp_path / replaced.name
    backups["day50"].write_bytes(replaced.read_bytes() + b"tampered")
    verified_marker(backups["day50"]).write_bytes(verified_marker(replaced).read_bytes())
    shutil.rmtree(tmp_path / "other")
    service = _service(tmp_path)

    assert {info.path.name: info.verified for info in service.backups()} == {
        backups["day60"].name: True,
        backups["day50"].name: False,
        backups["day40"].name: False,
    }
    result = service.prune()
    assert _names([i.path for i in result.kept]) == {backups["day60"].name}


def test_a_backup_dated_in_the_future_neither_outranks_newer_ones_nor_escapes_retention_unreported(tmp_path):
    # "future" was taken by a host whose clock was a year ahead. Taken at its word it would be the latest
    # backup and the newest verified one for a year: verify --latest would keep checking it, and prune would
    # delete day40, the newest verified backup with a real date. Its age is unknown: kept, and said so.
    backups = _ages({"future": -365, "day40": 40, "day60": 60}, tmp_path, verified={"future", "day40"})
    service = _service(tmp_path)

    assert service.latest() == backups["day40"]
    result = service.prune()

    assert [(i.path, i.error) for i in result.skipped] == [
        (backups["future"], "its created_at 2027-11-28T12:00:00Z is in the future")
    ]
    assert _names([i.path for i in result.kept]) == {backups["day40"].name}
    assert _names([i.path for i in result.deleted]) == {backups["day60"].name}
    assert backups["future"].exists() and verified_marker(backups["future"]).exists()


def test_a_backup_a_few_minutes_ahead_of_our_clock_is_still_the_latest(tmp_path):
    # Hosts sharing the directory disagree by seconds: the backup another one just took is the latest.
    backups = _ages({"ahead": -10 / 1440, "yesterday": 1}, tmp_path)
    service = _service(tmp_path)

    assert service.latest() == backups["ahead"]
    assert _names([i.path for i in service.prune().kept]) == {p.name for p in backups.values()}


def test_with_only_backups_dated_in_the_future_verify_latest_asks_for_a_name(tmp_path):
    _ages({"future": -2}, tmp_path)
    with pytest.raises(BackupError, match=r"1 dated in the future .*; name the one to verify"):
        _service(tmp_path).latest()


def test_the_prune_command_reports_a_backup_dated_in_the_future_and_keeps_it(tmp_path):
    future = _make_backup(tmp_path, datetime.now(UTC).replace(microsecond=0) + timedelta(days=400))
    env = {
        "MARKET_DATABASE_URL": f"sqlite:///{tmp_path / 'unused.db'}",
        "MARKET_BACKUP_DIR": str(tmp_path),
        "MARKET_BACKUP_RETENTION_DAYS": "7",
    }
    result = CliRunner().invoke(main, ["backup", "prune"], env=env)
    assert result.exit_code == 0, result.output
    assert f"kept {future}: age unknown (its created_at " in result.stderr
    assert "is in the future" in result.stderr
    assert future.exists()


def test_the_list_command_says_a_backup_dated_in_the_future_is_so_not_zero_minutes_old(tmp_path):
    future = _make_backup(tmp_path, datetime.now(UTC).replace(microsecond=0) + timedelta(days=400))
    env = {"MARKET_DATABASE_URL": f"sqlite:///{tmp_path / 'unused.db'}", "MARKET_BACKUP_DIR": str(tmp_path)}
    result = CliRunner().invoke(main, ["backup", "list"], env=env)
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if line.startswith(future.name))
    assert "in the future" in row and "0m 0s" not in row
