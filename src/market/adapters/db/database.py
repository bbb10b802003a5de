"""The database handle: builds the Piccolo engine from the URL, binds the tables to it, and owns the
connection pool's lifetime."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from piccolo.engine.base import Engine
from piccolo.engine.postgres import PostgresEngine
from piccolo.engine.sqlite import SQLiteEngine, TransactionType
from piccolo.querystring import QueryString

from market.config import DatabaseSettings

from .migrations import MIGRATIONS
from .migrations.runner import apply_migrations
from .tables import ALL_TABLES

SQLITE_BUSY_TIMEOUT_S = 30


async def _keep_session_state(connection: Any) -> None:
    """asyncpg's default reset on release (advisory unlock, CLOSE ALL, UNLISTEN, RESET ALL) doubles the
    cost of a short query (GOTCHAS). Nothing here keeps session state across a release: locks are
    transaction-scoped (pg_advisory_xact_lock) and we never LISTEN or SET outside a transaction."""


class Database:
    """One per process. `start()` opens the pool, `close()` closes it."""

    def __init__(self, settings: DatabaseSettings) -> None:
        self.settings = settings
        url = settings.url
        self.engine_name = url.engine  # "postgresql" or "sqlite": the OTel db.system.name
        self.name = url.name
        if url.engine == "sqlite":
            assert url.path is not None
            Path(url.path).parent.mkdir(parents=True, exist_ok=True)
            self.engine: Engine = SQLiteEngine(path=url.path, timeout=SQLITE_BUSY_TIMEOUT_S)
        else:
            self.engine = PostgresEngine(config={"dsn": url.dsn})
        for table in ALL_TABLES:
            table._meta.db = self.engine

    @property
    def is_postgres(self) -> bool:
        return self.engine_name == "postgresql"

    async def start(self) -> None:
        if isinstance(self.engine, PostgresEngine):
            await self.engine.start_connection_pool(
                min_size=1, max_size=self.settings.pool_size, reset=_keep_session_state
            )

    async def close(self) -> None:
        if isinstance(self.engine, PostgresEngine) and self.engine.pool is not None:
            await self.engine.close_connection_pool()

    async def migrate(self) -> list[str]:
        return await apply_migrations(self.engine, MIGRATIONS)

    async def ping(self) -> None:
        """Raise if the database cannot answer a trivial query."""
        await self.engine.run_querystring(QueryString("SELECT 1"))

    def write_transaction(self) -> Any:
        """A transaction for writes. On SQLite it takes the write lock at BEGIN (IMMEDIATE): deferred
        transactions that read then write fail with 'database is locked' under concurrency."""
        if isinstance(self.engine, SQLiteEngine):
            return self.engine.transaction(transaction_type=TransactionType.immediate)
        return self.engine.transaction()

    async def fetch(self, sql: str, *args: Any) -> list[Mapping[str, Any]]:
        """Run raw SQL with `{}` placeholders (compiled to $n or ? per engine). Rows are read by column
        name (asyncpg Records on PostgreSQL, dicts on SQLite)."""
        return await self.engine.run_querystring(QueryString(sql, *args))
