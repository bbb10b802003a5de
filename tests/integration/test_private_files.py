"""Files the service creates on its machine are for its own user only (0600, folders 0700): the SQLite
database and its side files, backups and the backup schedule's lock. No process umask is involved."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
from contextlib import closing
from pathlib import Path

from market.config import DatabaseURL
from market.ops.backups.archive import verified_marker
from market.ops.backups.schedule import LOCK_FILE, leadership
from market.ops.backups.service import BackupInfo, BackupService
from tests.support.backups import seed
from tests.support.database import open_database


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_sqlite_database_is_created_0600_in_a_new_0700_folder(tmp_path):
    path = tmp_path / "var" / "data" / "market.db"
    seed(f"sqlite:///{path}", sellers=1, items=1)
    assert _mode(path) == 0o600
    assert _mode(path.parent) == _mode(path.parent.parent) == 0o700


def test_an_existing_world_readable_database_and_its_wal_files_are_made_private_when_opened(tmp_path):
    path = tmp_path / "market.db"
    with closing(sqlite3.connect(path)) as db:  # made by an older version: the umask's 0644
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE t (x)")
        db.commit()
        os.chmod(path, 0o644)
        # Left behind as an unclean stop would leave them.
        for suffix in ("-wal", "-shm"):
            side = path.with_name(path.name + suffix)
            side.touch()
            os.chmod(side, 0o644)
        open_database(f"sqlite:///{path}")
        assert {p.name: _mode(p) for p in tmp_path.glob("market.db*")} == {
            "market.db": 0o600,
            "market.db-wal": 0o600,
            "market.db-shm": 0o600,
        }


def test_backups_their_verified_markers_folder_and_the_schedule_lock_are_private(fresh_sqlite_url, tmp_path):
    seed(fresh_sqlite_url, sellers=1, items=5)
    service = BackupService(DatabaseURL.parse(fresh_sqlite_url), tmp_path / "var" / "backups")

    async def lead_and_back_up() -> BackupInfo:
        async with leadership(service) as alive:
            assert alive is not None
            return await service.create()

    info = asyncio.run(lead_and_back_up())
    assert _mode(service.directory) == _mode(service.directory.parent) == 0o700
    assert _mode(info.path) == 0o600
    assert _mode(service.directory / LOCK_FILE) == 0o600
    asyncio.run(service.verify(info.path))
    assert _mode(verified_marker(info.path)) == 0o600
