"""The database handle: builds the Piccolo engine from the URL, binds the tables to it, and owns the
connection pool's lifetime."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from string import Formatter
from typing import Any

from piccolo.columns import Column
from piccolo.engine.base import Engine
from piccolo.engine.postgres import PostgresEngine
from piccolo.engine.sqlite import SQLiteEngine, TransactionType
from piccolo.querystring import QueryString

from market.adapters.telemetry.db import DbSpans, TracedPostgresEngine, TracedSQLiteEngine
from market.config import DatabaseSettings
from market.private_files import private_sqlite_file

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
        self.spans = DbSpans(url.engine, url.name)
        if url.engine == "sqlite":
            assert url.path is not None
            private_sqlite_file(Path(url.path))  # before the engine: -wal and -shm inherit its mode
            self.engine: Engine = TracedSQLiteEngine(path=url.path, timeout=SQLITE_BUSY_TIMEOUT_S)
        else:
            self.engine = TracedPostgresEngine(config={"dsn": url.dsn})
        self.engine.db_spans = self.spans  # type: ignore[attr-defined]
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

    async def copy_records(
        self, table: str, columns: Sequence[str], records: Iterable[Sequence[Any]]
    ) -> None:
        """Bulk load with PostgreSQL's COPY on a pooled connection: ~10x faster than multi-row INSERTs
        built by Piccolo. PostgreSQL only; `start()` first."""
        if not isinstance(self.engine, PostgresEngine) or self.engine.pool is None:
            raise RuntimeError("copy_records needs a started PostgreSQL database")
        async with self.engine.pool.acquire() as connection:
            await connection.copy_records_to_table(table, records=records, columns=list(columns))

    async def vacuum_analyze(self, *tables: str) -> None:
        """After a bulk load on PostgreSQL: fold the GIN pending list into the index (until then every
        search scans it) and give the planner statistics. A no-op on SQLite."""
        if not isinstance(self.engine, PostgresEngine) or self.engine.pool is None:
            return
        async with self.engine.pool.acquire() as connection:
            for table in tables:
                await connection.execute(f'VACUUM ANALYZE "{table}"')  # not in a transaction: simple protocol

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
        name (asyncpg Records on PostgreSQL, dicts on SQLite).

        On PostgreSQL the template is compiled once and run straight on the engine's pool, or on the
        current transaction's connection, exactly where Piccolo would run it: Piccolo re-parses the template
        on every call (~6 µs of CPU per query, benchmarks/README.md). Either way the statement gets its
        span (the engine traces its own path)."""
        engine = self.engine
        if isinstance(engine, PostgresEngine) and not any(isinstance(a, QueryString | Column) for a in args):
            query = _postgres_sql(sql)
            if not DbSpans.wanted():
                return await self._fetch_postgres(engine, query, args)
            with self.spans.statement(query):
                return await self._fetch_postgres(engine, query, args)
        return await engine.run_querystring(QueryString(sql, *args))

    @staticmethod
    async def _fetch_postgres(engine: PostgresEngine, query: str, args: Sequence[Any]) -> Any:
        transaction = engine.current_transaction.get()
        if transaction is not None:
            return await transaction.connection.fetch(query, *args)
        if engine.pool is not None:
            async with engine.pool.acquire() as connection:
                return await connection.fetch(query, *args)
        connection = await engine.get_new_connection()
        try:
            return await connection.fetch(query, *args)
        finally:
            await connection.close()


@lru_cache(maxsize=1024)
def _postgres_sql(template: str) -> str:
    """`{}` placeholders numbered `$1`, `$2`, ... as Piccolo compiles them (`{{`/`}}` are literal braces)."""
    parts: list[str] = []
    number = 0
    for literal, field, _, _ in Formatter().parse(template):
        parts.append(literal)
        if field is not None:
            number += 1
            parts.append(f"${number}")
    return "".join(parts)
