"""Faults: damaged or foreign archives are refused by verify and restore with one clear line and the target
untouched; a failing or missing pg_dump, a full disk or a crash never leave anything that looks like a backup."""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from market.config import DatabaseURL
from market.ops.backups.archive import verified_marker
from market.ops.backups.manifest import FORMAT_VERSION
from market.ops.backups.service import BackupService
from tests.integration.blocking import locked
from tests.support.backups import (
    Market,
    archive_members,
    fingerprint,
    one_line_failure,
    pack_archive,
    scratch_databases,
    seed,
    with_manifest_edited,
)

PAYLOAD = {"postgresql": "database.dump", "sqlite": "database.sqlite3"}


def _truncated(good: Path, other: Path, path: Path, engine: str) -> None:
    data = good.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])


def _flipped_byte(good: Path, other: Path, path: Path, engine: str) -> None:
    data = bytearray(good.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))


def _missing_manifest(good: Path, other: Path, path: Path, engine: str) -> None:
    members = archive_members(good)
    del members["manifest.json"]
    pack_archive(path, members)


def _newer_format(good: Path, other: Path, path: Path, engine: str) -> None:
    with_manifest_edited(good, path, lambda manifest: manifest.update(format_version=FORMAT_VERSION + 1))


def _other_engine(good: Path, other: Path, path: Path, engine: str) -> None:
    shutil.copyfile(other, path)


def _other_engine_payload_mislabelled(good: Path, other: Path, path: Path, engine: str) -> None:
    # A manifest for this engine, with valid checksums, over the other engine's dump.
    members, foreign = archive_members(good), archive_members(other)
    (foreign_payload,) = (data for name, data in foreign.items() if name != "manifest.json")
    manifest = json.loads(members["manifest.json"])
    manifest["files"] = {PAYLOAD[engine]: hashlib.sha256(foreign_payload).hexdigest()}
    pack_archive(path, {"manifest.json": json.dumps(manifest).encode(), PAYLOAD[engine]: foreign_payload})


FAULTS = {
    "truncated": (_truncated, "truncated or corrupt"),
    "flipped-byte": (_flipped_byte, "corrupt"),
    "missing-manifest": (_missing_manifest, "no manifest.json"),
    "newer-format": (_newer_format, "newer than this market understands"),
    "other-engine": (_other_engine, "backup; the configured database"),
    "mislabelled-payload": (_other_engine_payload_mislabelled, "is not a"),
}


@pytest.mark.parametrize("fault", FAULTS)
def test_a_damaged_or_foreign_archive_is_refused_and_the_target_is_untouched(
    market: Market, engine: str, good_archives: dict[str, Path], fault: str
):
    damage, expected = FAULTS[fault]
    seed(market.url, sellers=1, items=20)
    before = fingerprint(market.url)
    market.directory.mkdir()
    archive = market.directory / good_archives[engine].name
    other = "sqlite" if engine == "postgresql" else "postgresql"
    damage(good_archives[engine], good_archives[other], archive, engine)
    damaged = archive.read_bytes()

    for command in (["verify", str(archive)], ["restore", str(archive), "--force", "--yes"]):
        line = one_line_failure(market(*command))
        assert expected in line, line
        assert archive.name in line

    assert fingerprint(market.url) == before
    assert archive.read_bytes() == damaged
    assert not verified_marker(archive).exists()
    assert [p.name for p in market.directory.iterdir()] == [archive.name]  # no work files left
    if engine == "postgresql":
        assert not any(name.startswith(market.url.rpartition("/")[2]) for name in scratch_databases())


@pytest.mark.parametrize("command", ["verify", "restore"])
def test_a_payload_damaged_behind_valid_checksums_is_refused_naming_the_archive_not_the_database(
    market: Market, engine: str, good_archives: dict[str, Path], command: str
):
    """The engine's own check of the payload (SQLite's integrity check, pg_restore's listing) failed with a
    line naming neither the archive nor its payload: "the SQLite database is damaged" reads as the configured
    database."""
    seed(market.url, sellers=1, items=5)
    before = fingerprint(market.url)
    market.directory.mkdir()
    archive = market.directory / good_archives[engine].name
    members = archive_members(good_archives[engine])
    payload = members[PAYLOAD[engine]]
    magic = {"postgresql": b"PGDMP", "sqlite": b"SQLite format 3\x00"}[engine]
    assert payload.startswith(magic)
    damaged = magic + bytes(range(256)) * 16  # the engine's magic, then no dump at all
    manifest = json.loads(members["manifest.json"])
    manifest["files"] = {PAYLOAD[engine]: hashlib.sha256(damaged).hexdigest()}
    pack_archive(archive, {"manifest.json": json.dumps(manifest).encode(), PAYLOAD[engine]: damaged})

    args = [command, str(archive)] + (["--force", "--yes"] if command == "restore" else [])
    line = one_line_failure(market(*args))

    assert line.startswith(f"market: {archive.name}: {PAYLOAD[engine]}"), line
    assert fingerprint(market.url) == before
    assert not verified_marker(archive).exists()


def _fake_failing_pg_dump(directory: Path) -> Path:
    """A pg_dump that starts writing its output file, then fails like the real one does."""
    directory.mkdir()
    script = directory / "pg_dump"
    script.write_text(
        "#!/bin/sh\n"
        'for a in "$@"; do case "$a" in --file=*) printf "PGDMP partial" > "${a#--file=}";; esac; done\n'
        'echo "pg_dump: error: query failed: ERROR:  simulated failure" >&2\n'
        "exit 1\n"
    )
    script.chmod(0o755)
    return directory


@pytest.mark.parametrize("case", ["missing", "failing"])
def test_without_a_working_pg_dump_create_fails_clearly_and_leaves_no_file(
    fresh_postgres_url: str, tmp_path: Path, case: str
):
    market = Market(fresh_postgres_url, tmp_path / "backups")
    seed(market.url, items=50)
    if case == "missing":
        empty = tmp_path / "empty-bin"
        empty.mkdir()
        path, expected = str(empty), "pg_dump not found on PATH"
    else:
        path = f"{_fake_failing_pg_dump(tmp_path / 'bin')}:{os.environ['PATH']}"
        expected = "pg_dump failed: query failed: ERROR: simulated failure"

    line = one_line_failure(market("create", env={"PATH": path}))

    assert expected in line
    assert not market.directory.exists() or list(market.directory.iterdir()) == []


def _limit_file_size() -> None:
    # Any write past 64 KiB fails (EFBIG; pg_dump, which keeps the default SIGXFSZ action, is killed):
    # the disk is full as far as this process tree is concerned.
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))


def test_a_full_disk_during_create_fails_clearly_and_leaves_no_file(market: Market, engine: str):
    seed(market.url, items=2000)
    env = {**os.environ, "MARKET_DATABASE_URL": market.url, "MARKET_BACKUP_DIR": str(market.directory)}
    done = subprocess.run(
        [sys.executable, "-m", "market", "backup", "create"],
        env=env,
        capture_output=True,
        text=True,
        preexec_fn=_limit_file_size,
        timeout=60,
    )
    assert done.returncode != 0, done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("market: "), done.stderr
    assert list(market.directory.iterdir()) == []


def _inflate(url: str, doublings: int) -> None:
    """Many more items, fast: copies of the seeded ones (the full-text triggers fire as usual)."""
    with closing(sqlite3.connect(DatabaseURL.parse(url).path)) as db:
        for _ in range(doublings):
            db.execute(
                "INSERT INTO items (id, seller_id, title, description, price_cents, currency, stock, category,"
                " status, created_at, updated_at) SELECT lower(hex(randomblob(16))), seller_id, title,"
                " description, price_cents, currency, stock, category, status, created_at, updated_at FROM items"
            )
        db.commit()


def _work_dir(directory: Path) -> bool:
    return any(p.is_dir() and p.name.endswith(".partial") for p in _entries(directory))


def _unpublished_archive(directory: Path) -> bool:
    return any(p.is_file() and p.name.endswith(".partial") for p in _entries(directory))


def _entries(directory: Path) -> list[Path]:
    try:
        return list(directory.iterdir())
    except FileNotFoundError:
        return []


@pytest.mark.parametrize("moment", [_work_dir, _unpublished_archive], ids=["while-dumping", "while-packing"])
def test_a_create_killed_midway_leaves_nothing_that_looks_like_a_backup(fresh_sqlite_url, tmp_path, moment):
    market = Market(fresh_sqlite_url, tmp_path / "backups")
    seed(market.url, items=2000)
    _inflate(market.url, doublings=3)  # 16 000 items: a create that lasts long enough to be caught
    env = {**os.environ, "MARKET_DATABASE_URL": market.url, "MARKET_BACKUP_DIR": str(market.directory)}
    process = subprocess.Popen([sys.executable, "-m", "market", "backup", "create"], env=env)
    deadline = time.monotonic() + 30
    while process.poll() is None and not moment(market.directory) and time.monotonic() < deadline:
        time.sleep(0.001)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, "the create finished before it could be interrupted"

    assert market.archives() == []
    assert market.ok("list").stdout.startswith("no backups")
    leftovers = list(market.directory.iterdir())
    assert leftovers and all(p.name.startswith(".") and p.name.endswith(".partial") for p in leftovers)
    # A day later, prune clears them.
    day_later = BackupService(
        DatabaseURL.parse(market.url), market.directory, clock=lambda: datetime.now(UTC) + timedelta(days=2)
    )
    assert sorted(day_later.prune().leftovers) == sorted(leftovers)
    assert list(market.directory.iterdir()) == []


@pytest.mark.parametrize(
    "mode",
    [
        "ACCESS SHARE",  # a transaction left open after reading: pg_restore's DROP TABLE waits for it
        "ACCESS EXCLUSIVE",  # a migration, a LOCK TABLE: the restore's own check of the target waits
    ],
)
def test_a_forced_restore_behind_another_sessions_lock_gives_up_in_one_line_naming_it_and_changes_nothing(
    fresh_postgres_url: str, tmp_path: Path, mode: str
):
    """pg_restore sets lock_timeout = 0 itself: behind another session's lock on a table it waited for ever,
    without a word. It gives up after MARKET_BACKUP_LOCK_TIMEOUT instead, naming the session, all undone."""
    market = Market(fresh_postgres_url, tmp_path / "backups")
    seed(market.url, sellers=1, items=30)
    archive = market.create()
    seed(market.url, sellers=1, items=7)  # later writes a restore would undo
    current = fingerprint(market.url)

    started = time.monotonic()
    # Let go after 30 s, so that a restore that waits fails the test rather than hangs.
    with locked(market.url, "items", mode=mode, at_most=30):
        result = market("restore", str(archive), "--force", "--yes", env={"MARKET_BACKUP_LOCK_TIMEOUT": "1"})
    line = one_line_failure(result)

    assert time.monotonic() - started < 25
    assert "gave up after waiting 1 s for a lock on items held by session " in line, line
    assert (
        "idle in transaction" in line and "was not changed" in line and "MARKET_BACKUP_LOCK_TIMEOUT" in line
    )
    assert fingerprint(market.url) == current
