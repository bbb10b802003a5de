"""Applies pending migrations, once, even when several workers start at the same moment."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from piccolo.engine.base import Engine
from piccolo.engine.sqlite import SQLiteEngine, TransactionType
from piccolo.querystring import QueryString

log = logging.getLogger(__name__)

# Any constant works; it only has to be the same in every process that migrates this database.
_MIGRATION_LOCK_ID = 72_616_001


Step = str | Callable[[Engine], Awaitable[None]]
"""A statement, or (rarely: when SQL alone cannot say it) an async function run with the engine, in the
migration's transaction."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: str
    postgresql: Sequence[Step]
    sqlite: Sequence[Step]

    def statements(self, engine_type: str) -> Sequence[Step]:
        return self.postgresql if engine_type == "postgres" else self.sqlite


_LEDGER = (
    "CREATE TABLE IF NOT EXISTS market_migrations ("
    " version VARCHAR(64) PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL)"
)


async def apply_migrations(engine: Engine, migrations: Sequence[Migration]) -> list[str]:
    """Apply the migrations not yet recorded, in order, in one transaction. Returns the versions applied."""
    if isinstance(engine, SQLiteEngine):
        await _use_wal(engine)
        transaction = engine.transaction(transaction_type=TransactionType.immediate)
    else:
        transaction = engine.transaction()
    applied: list[str] = []
    async with transaction:
        if engine.engine_type == "postgres":
            # A migration may rebuild a big table, and waits for the workers migrating at the same moment:
            # the per-request timeouts of the service's connections do not apply to it.
            await engine.run_ddl("SET LOCAL statement_timeout = 0")
            await engine.run_ddl("SET LOCAL lock_timeout = 0")
            await engine.run_ddl(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK_ID})")
        await engine.run_ddl(_LEDGER)
        rows = await engine.run_ddl("SELECT version FROM market_migrations")
        done = {row["version"] for row in rows}
        for migration in migrations:
            if migration.version in done:
                continue
            for statement in migration.statements(engine.engine_type):
                if callable(statement):
                    await statement(engine)
                else:
                    await engine.run_ddl(statement)
            await _record(engine, migration.version)
            applied.append(migration.version)
    for version in applied:
        log.info("applied migration", extra={"migration": version})
    return applied


async def _use_wal(engine: SQLiteEngine) -> None:
    """WAL lets readers proceed while one writer commits; the setting is stored in the file. Switching needs
    the database to itself: when another process is in a write transaction (migrating at the same moment,
    having switched first), the switch is left to it instead of failing the start."""
    rows = await engine.run_ddl("PRAGMA journal_mode")
    if rows and str(next(iter(rows[0].values()))).lower() == "wal":
        return
    try:
        await engine.run_ddl("PRAGMA journal_mode=WAL")
    except sqlite3.OperationalError as exc:
        if "locked" not in str(exc):
            raise
        log.info("database busy; journal mode left to the process holding it")


async def _record(engine: Engine, version: str) -> None:
    await engine.run_querystring(
        QueryString(
            "INSERT INTO market_migrations (version, applied_at) VALUES ({}, {})",
            version,
            datetime.now(UTC),
        )
    )
