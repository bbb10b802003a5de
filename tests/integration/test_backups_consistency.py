"""A backup taken while writes continue is one consistent snapshot, on both engines: each write below adds a
user and an item in one transaction, so a snapshot holds as many of one as of the other, and exactly the
first N of the sequence."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import uuid
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from market.config import DatabaseURL
from market.ops.backups.service import BackupService
from tests.support.backups import ITEMS, SELLERS, Market, other_postgres_url, seed

_USER = (
    "INSERT INTO users (id, email, display_name, role, password_hash, created_at)"
    " VALUES ({0}, {1}, {2}, 'seller', 'x', {3})"
)
_ITEM = (
    "INSERT INTO items (id, seller_id, title, description, price_cents, currency, stock, category, status,"
    " created_at, updated_at) VALUES ({0}, {1}, {2}, '', 100, 'EUR', 1, 'writes', 'active', {3}, {4})"
)


class Writer:
    """Commits write number 1, 2, 3, … until stopped; `done` is the last one committed."""

    def __init__(self, url: str) -> None:
        self.url = DatabaseURL.parse(url)
        self.done = 0
        self.stop = threading.Event()

    async def run(self) -> None:
        if self.url.engine == "sqlite":
            await asyncio.to_thread(self._run_sqlite)
            return
        conn = await asyncpg.connect(self.url.dsn)
        try:
            user, item = _USER.format("$1", "$2", "$3", "$4"), _ITEM.format("$1", "$2", "$3", "$4", "$5")
            while not self.stop.is_set():
                n, user_id, now = self.done + 1, uuid.uuid4(), datetime.now(UTC)
                async with conn.transaction():
                    await conn.execute(user, user_id, f"writer{n}@example.com", f"writer {n}", now)
                    await conn.execute(item, uuid.uuid4(), user_id, f"writer {n}", now, now)
                self.done = n
        finally:
            await conn.close()

    def _run_sqlite(self) -> None:
        user, item = _USER.format("?", "?", "?", "?"), _ITEM.format("?", "?", "?", "?", "?")
        with closing(sqlite3.connect(self.url.path, timeout=30, isolation_level=None)) as db:
            while not self.stop.is_set():
                n, user_id, now = self.done + 1, str(uuid.uuid4()), datetime.now(UTC).isoformat()
                db.execute("BEGIN IMMEDIATE")
                db.execute(user, (user_id, f"writer{n}@example.com", f"writer {n}", now))
                db.execute(item, (str(uuid.uuid4()), user_id, f"writer {n}", now, now))
                db.execute("COMMIT")
                self.done = n

    async def wait_for(self, n: int, task: asyncio.Task[None]) -> None:
        """Until write `n` is committed (or the writer failed: then its error)."""
        while self.done < n:
            await asyncio.wait({task}, timeout=0.001)
            if task.done():
                task.result()
                raise AssertionError("the writer stopped early")


def _written(url: str) -> tuple[set[int], set[int]]:
    """The sequence numbers of the writer's users and items in a database."""
    users_sql = "SELECT display_name AS v FROM users WHERE email LIKE 'writer%'"
    items_sql = "SELECT title AS v FROM items WHERE category = 'writes'"
    parsed = DatabaseURL.parse(url)
    if parsed.engine == "sqlite":
        with closing(sqlite3.connect(parsed.path)) as db:
            users, items = db.execute(users_sql).fetchall(), db.execute(items_sql).fetchall()
    else:

        async def fetch() -> tuple[list, list]:
            conn = await asyncpg.connect(parsed.dsn)
            try:
                return await conn.fetch(users_sql), await conn.fetch(items_sql)
            finally:
                await conn.close()

        users, items = asyncio.run(fetch())
    return {int(r[0].split()[1]) for r in users}, {int(r[0].split()[1]) for r in items}


def test_a_backup_taken_while_writes_continue_is_a_consistent_snapshot(
    market: Market, engine: str, tmp_path: Path
):
    seed(market.url)
    service = BackupService(DatabaseURL.parse(market.url), market.directory)
    writer = Writer(market.url)

    async def backup_during_writes() -> tuple[int, object, int]:
        writing = asyncio.create_task(writer.run())
        try:
            await writer.wait_for(20, writing)
            before = writer.done
            info = await service.create()
            after = writer.done
            await writer.wait_for(after + 20, writing)  # and writes go on afterwards
        finally:
            writer.stop.set()
            await writing
        return before, info, after

    before, info, after = asyncio.run(backup_during_writes())
    assert after > before, "no write committed while the backup ran; the test proves nothing"

    tables = info.manifest.tables
    n = tables["items"] - ITEMS
    assert tables["users"] - SELLERS == n  # the two tables come from the same instant
    assert before <= n <= after

    # A real restore shows exactly writes 1…n, each with its user and its item: no torn write, no gap.
    if engine == "sqlite":
        target = f"sqlite:///{tmp_path / 'restored.db'}"
        cleanup = None
    else:
        cleanup = other_postgres_url()
        target = next(cleanup)
    try:
        restored = BackupService(DatabaseURL.parse(target), market.directory)
        result = asyncio.run(restored.restore(info.path))
        assert result.tables == tables
        assert _written(target) == (set(range(1, n + 1)), set(range(1, n + 1)))
    finally:
        if cleanup is not None:
            next(cleanup, None)
    assert max(_written(market.url)[0]) >= after + 20  # the source kept its later writes
