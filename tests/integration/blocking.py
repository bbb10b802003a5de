"""Doing things to a test database from outside the app under test: plain SQL, and a table lock held by
another connection (a thread of its own, so the app's event loop and the lock holder do not wait on each
other)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg


def execute(url: str, sql: str) -> None:
    """Run one statement on the database at `url` (either engine), committed."""
    if url.startswith("sqlite"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            conn.execute(sql)
        return

    async def run() -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


@contextmanager
def locked(
    url: str, *tables: str, mode: str = "ACCESS EXCLUSIVE", at_most: float | None = None
) -> Iterator[None]:
    """Hold `LOCK TABLE <tables> IN <mode> MODE` (PostgreSQL; ACCESS SHARE is what any open transaction that
    read the tables holds) or the write lock (SQLite, whatever the tables) from another connection until the
    block ends, or for `at_most` seconds (PostgreSQL): a test of code that would wait for ever fails, not hangs."""
    taken, release = threading.Event(), threading.Event()
    failure: list[BaseException] = []

    def hold_postgres() -> None:
        async def run() -> None:
            conn = await asyncpg.connect(url)
            try:
                async with conn.transaction():
                    names = ", ".join(f'"{table}"' for table in tables)
                    await conn.execute(f"LOCK TABLE {names} IN {mode} MODE")
                    taken.set()
                    await asyncio.to_thread(release.wait, at_most)
            finally:
                await conn.close()

        asyncio.run(run())

    def hold_sqlite() -> None:
        conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        try:
            conn.execute("BEGIN EXCLUSIVE")
            taken.set()
            release.wait()
            conn.execute("ROLLBACK")
        finally:
            conn.close()

    def hold() -> None:
        try:
            (hold_sqlite if url.startswith("sqlite") else hold_postgres)()
        except BaseException as exc:
            failure.append(exc)
            taken.set()

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    taken.wait(30)
    if failure:
        raise failure[0]
    try:
        yield
    finally:
        release.set()
        thread.join(30)


def idle_in_transaction(url: str) -> list[str]:
    """The queries of connections to the PostgreSQL database at `url` left `idle in transaction`."""

    async def run() -> list[str]:
        name = url.rsplit("/", 1)[1]
        conn = await asyncpg.connect(url.rsplit("/", 1)[0] + "/postgres")
        try:
            rows = await conn.fetch(
                "SELECT query FROM pg_stat_activity WHERE datname = $1 AND state LIKE 'idle in transaction%'",
                name,
            )
        finally:
            await conn.close()
        return [row["query"] for row in rows]

    return asyncio.run(run())
