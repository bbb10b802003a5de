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
def locked(url: str, table: str) -> Iterator[None]:
    """Hold `LOCK TABLE <table> IN ACCESS EXCLUSIVE MODE` (PostgreSQL) or the write lock (SQLite, any table)
    from another connection until the block ends."""
    taken, release = threading.Event(), threading.Event()
    failure: list[BaseException] = []

    def hold_postgres() -> None:
        async def run() -> None:
            conn = await asyncpg.connect(url)
            try:
                async with conn.transaction():
                    await conn.execute(f'LOCK TABLE "{table}" IN ACCESS EXCLUSIVE MODE')
                    taken.set()
                    await asyncio.to_thread(release.wait)
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
