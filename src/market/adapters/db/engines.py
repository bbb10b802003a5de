"""The Piccolo engines the service runs on: traced (adapters/telemetry/db.py), with transactions that always
give their connection back.

Piccolo's own transactions leak the connection when the task is cancelled, or a statement fails, between
taking the connection and the end of `__aexit__` (during BEGIN, COMMIT or ROLLBACK): the connection is never
released, PostgreSQL shows it `idle in transaction`, and closing the pool then waits for it forever (a
shutdown that never ended, issue 11). On SQLite the connection and its thread would stay open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from typing import Any

from piccolo.engine.postgres import PostgresTransaction
from piccolo.engine.sqlite import SQLiteTransaction, TransactionType

from market.adapters.telemetry.db import TracedPostgresEngine, TracedSQLiteEngine
from market.domain.catalog import DOTTED_I

log = logging.getLogger(__name__)


class _ReleasingTransaction:
    """Mixed into Piccolo's transactions: the connection is let go of on every way out, cancellation
    included (an open transaction is rolled back by closing or resetting its connection)."""

    __slots__ = ()

    async def __aenter__(self: Any) -> Any:
        if self._parent is not None:
            return self._parent
        self.connection = await self.get_connection()
        try:
            if isinstance(self, PostgresTransaction):
                self.transaction = self.connection.transaction()
            await self.begin()
        except BaseException:
            await _shielded(self._let_go())
            raise
        self.context = self.engine.current_transaction.set(self)
        return self

    async def __aexit__(self: Any, exc_type: Any, exc: Any, tb: Any) -> bool:
        if self._parent:
            return exc is None
        try:
            if exc is not None:
                if not self._rolled_back:
                    await self.rollback()
            elif not self._committed and not self._rolled_back:
                await self.commit()
        finally:
            self.engine.current_transaction.reset(self.context)
            await _shielded(self._let_go())
        return exc is None


async def _shielded(cleanup: Any) -> None:
    """Run a clean-up to its end even if the task is cancelled (once or more) meanwhile; then let the
    cancellation through. The clean-up is bounded: closing the pool terminates what is still out."""
    task = asyncio.ensure_future(cleanup)
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
    task.result()


class ReleasingPostgresTransaction(_ReleasingTransaction, PostgresTransaction):
    __slots__ = ()

    async def _let_go(self) -> None:
        # Releasing resets the connection, which rolls back a transaction left open; a connection that
        # cannot even be released is closed at once.
        try:
            if self.engine.pool:
                await self.engine.pool.release(self.connection)
            else:
                await self.connection.close(timeout=2)
        except Exception:
            log.warning("database connection dropped instead of released", exc_info=True)
            with contextlib.suppress(Exception):  # already detached from the pool, or gone
                self.connection.terminate()


class ReleasingSQLiteTransaction(_ReleasingTransaction, SQLiteTransaction):
    __slots__ = ()

    async def _let_go(self) -> None:
        # Closing rolls back what was not committed and drops the write lock.
        try:
            await self.connection.close()
        except Exception:
            log.warning("SQLite connection could not be closed cleanly", exc_info=True)


class _NoVersionProbe:
    """Piccolo's engine constructor probes the server's version on a connection of its own: one more connection,
    made before `Database.start()`; when nothing answers, a coloured `Warning` on stderr (not a log line); and
    otherwise an INFO line, "Running Sqlite version 3.4", on every start, which landed on the stdout of commands
    whose stdout is their result. All it checks is Piccolo's minimum (PostgreSQL 10, SQLite 3.25): the first
    real statement says soon enough whether the database answers, and `unusable_database` (errors.py) says so in
    one line."""

    async def check_version(self) -> None:
        return None


class MarketPostgresEngine(_NoVersionProbe, TracedPostgresEngine):
    """PostgreSQL: traced statements, transactions that always release their pooled connection."""

    def transaction(self, allow_nested: bool = True) -> ReleasingPostgresTransaction:  # type: ignore[override]
        return ReleasingPostgresTransaction(engine=self, allow_nested=allow_nested)


SQLITE_LOWER = "market_lower"
"""SQLite's Unicode-aware lower(): `fold_case`, registered on every connection (UnicodeSQLiteConnection)."""


def fold_case(text: str) -> str:
    """`text` lower-cased for a case-insensitive match, alike on both engines (`folded_sql`): Python's lower()
    with every sigma as σ and a dotted i as a plain i. Python lowers a capital Σ to ς at the end of a word and
    to σ elsewhere, PostgreSQL's lower() always to σ, so 'ΝΙΚΟΣ' never matched 'νικος' there, nor a query ending
    in Σ a longer word. Python lowers İ to i + U+0307, PostgreSQL's lower() (libc) to a plain i, so 'İSTANBUL'
    matched 'istanbul' on one engine and 'İstanbul'.lower() on the other; the dot folded away, both match."""
    return text.lower().replace("ς", "σ").replace(DOTTED_I, "i")


def folded_sql(column: str, *, is_postgres: bool) -> str:
    """The SQL expression of `column` folded as `fold_case` folds a pattern (on PostgreSQL also when its lower()
    keeps the dot of İ, as ICU collations do, or the text holds I + U+0307 already)."""
    if is_postgres:
        return f"replace(translate(lower({column}), 'ς', 'σ'), '{DOTTED_I}', 'i')"
    return f"{SQLITE_LOWER}({column})"


def _lower(text: object) -> object:
    return fold_case(text) if isinstance(text, str) else text


class UnicodeSQLiteConnection(sqlite3.Connection):
    """A SQLite connection with `market_lower(text)`, `fold_case`: SQLite's own lower() and LIKE fold
    ASCII letters only, so a case-insensitive match of 'ÉMILE' or 'Борис' (PostgreSQL's lower() folds them)
    found nothing, not even when typed as stored."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.create_function(SQLITE_LOWER, 1, _lower, deterministic=True)


class MarketSQLiteEngine(_NoVersionProbe, TracedSQLiteEngine):
    """SQLite: traced statements, transactions that always close their connection, `market_lower()`."""

    def __init__(self, path: str, **connection_kwargs: Any) -> None:
        # Piccolo opens its connections with aiosqlite.connect(**connection_kwargs), which hands them to
        # sqlite3.connect: the factory reaches every connection, in a transaction or not.
        super().__init__(path=path, factory=UnicodeSQLiteConnection, **connection_kwargs)

    def transaction(  # type: ignore[override]
        self, transaction_type: TransactionType = TransactionType.deferred, allow_nested: bool = True
    ) -> ReleasingSQLiteTransaction:
        return ReleasingSQLiteTransaction(
            engine=self, transaction_type=transaction_type, allow_nested=allow_nested
        )
