"""The database handle: builds the Piccolo engine from the URL, binds the tables to it, and owns the
connection pool's lifetime."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from opentelemetry.metrics import Histogram
from piccolo.columns import Column
from piccolo.engine.base import Engine
from piccolo.engine.postgres import PostgresEngine
from piccolo.engine.sqlite import SQLiteEngine, TransactionType
from piccolo.querystring import QueryString

from market.adapters.telemetry.db import DbSpans
from market.config import DatabaseSettings
from market.private_files import private_sqlite_file

from .engines import MarketPostgresEngine, MarketSQLiteEngine
from .errors import POOL_EXHAUSTED, DatabaseUnavailable
from .migrations import HEAD, MIGRATIONS, TABLES
from .migrations.runner import apply_migrations
from .tables import ALL_TABLES

log = logging.getLogger(__name__)

CLOSE_GRACE_S = 3.0
"""How long closing the pool waits for connections in use to come back before terminating them all."""
READINESS_CACHE_S = 1.0
"""A probe storm costs one readiness query per second per process."""
LONG_STATEMENT_TIMEOUT = "10min"
"""The statement timeout of work that is meant to be long (reports, pruning, bulk loads); migrations have none."""


async def _keep_session_state(connection: Any) -> None:
    """asyncpg's default reset on release (advisory unlock, CLOSE ALL, UNLISTEN, RESET ALL) is a
    round trip of its own after every short query. Nothing here keeps session state across a release: locks are
    transaction-scoped (pg_advisory_xact_lock) and we never LISTEN or SET outside a transaction."""


class Database:
    """One per process. `start()` opens the pool, `close()` closes it."""

    def __init__(self, settings: DatabaseSettings, duration: Histogram | None = None) -> None:
        """`duration`: the statements' histogram (DbSpans)."""
        self.settings = settings
        url = settings.url
        self.engine_name = url.engine  # "postgresql" or "sqlite": the OTel db.system.name
        self.name = url.name
        self.spans = DbSpans(url.engine, url.name, duration)
        if url.engine == "sqlite":
            assert url.path is not None
            private_sqlite_file(Path(url.path))  # before the engine: -wal and -shm inherit its mode
            # The busy timeout: how long a statement waits for another connection's write lock.
            self.engine: Engine = MarketSQLiteEngine(path=url.path, timeout=settings.lock_timeout_s)
        else:
            self.engine = MarketPostgresEngine(
                config={
                    "dsn": url.dsn,
                    # Per connection, so that no query waits behind a lock or runs for minutes while its
                    # client has long given up; long work raises it with SET LOCAL (long_statements()).
                    "server_settings": {
                        "statement_timeout": f"{settings.statement_timeout_s}s",
                        "lock_timeout": f"{settings.lock_timeout_s}s",
                    },
                }
            )
        self.engine.db_spans = self.spans  # type: ignore[attr-defined]
        for table in ALL_TABLES:
            table._meta.db = self.engine
        self._readiness: tuple[float, str | None] | None = None

    @property
    def is_postgres(self) -> bool:
        return self.engine_name == "postgresql"

    async def start(self) -> None:
        if isinstance(self.engine, PostgresEngine):
            await self.engine.start_connection_pool(
                min_size=1, max_size=self.settings.pool_size, reset=_keep_session_state
            )
            self.engine.pool = _BoundedPool(self.engine.pool, self.settings.pool_timeout_s)

    async def close(self, grace_s: float = CLOSE_GRACE_S) -> None:
        """Close the pool. asyncpg's close waits for every connection in use to be released, however long
        that takes: after `grace_s` the connections still out are terminated instead."""
        if not isinstance(self.engine, PostgresEngine) or self.engine.pool is None:
            return
        pool, self.engine.pool = self.engine.pool, None
        try:
            await asyncio.wait_for(pool.close(), grace_s)
        except TimeoutError:
            log.warning("database connections still in use at shutdown were terminated")
            pool.terminate()

    async def copy_records(
        self, table: str, columns: Sequence[str], records: Iterable[Sequence[Any]]
    ) -> None:
        """Bulk load with PostgreSQL's COPY on a pooled connection: Piccolo's multi-row INSERTs
        spend most of their time converting and numbering parameters (figures: benchmarks/README.md). PostgreSQL only; `start()` first."""
        if not isinstance(self.engine, PostgresEngine) or self.engine.pool is None:
            raise RuntimeError("copy_records needs a started PostgreSQL database")
        async with self.engine.pool.acquire() as connection, connection.transaction():
            await connection.execute(f"SET LOCAL statement_timeout = '{LONG_STATEMENT_TIMEOUT}'")
            await connection.copy_records_to_table(table, records=records, columns=list(columns))

    async def vacuum_analyze(self, *tables: str) -> None:
        """After a bulk load on PostgreSQL: fold the GIN pending list into the index (until then every
        search scans it) and give the planner statistics. A no-op on SQLite."""
        if not isinstance(self.engine, PostgresEngine) or self.engine.pool is None:
            return
        async with self.engine.pool.acquire() as connection:
            # VACUUM cannot run in a transaction, so no SET LOCAL: set it for the session and put it back
            # (to the connection's own setting) before the connection returns to the pool.
            await connection.execute(f"SET statement_timeout = '{LONG_STATEMENT_TIMEOUT}'")
            try:
                for table in tables:
                    await connection.execute(f'VACUUM ANALYZE "{table}"')  # simple protocol
            finally:
                await connection.execute("RESET statement_timeout")

    async def migrate(self) -> list[str]:
        return await apply_migrations(self.engine, MIGRATIONS)

    async def ping(self) -> None:
        """Raise if the database cannot answer a trivial query."""
        await self.engine.run_querystring(QueryString("SELECT 1"))

    async def unready_reason(self) -> str | None:
        """None when requests can be served: the database answers, its migration ledger holds this code's
        head and nothing newer, and every table the code uses exists. Otherwise what is wrong, in plain
        words. One query; the answer is kept for READINESS_CACHE_S."""
        now = time.monotonic()
        if self._readiness is not None and now - self._readiness[0] < READINESS_CACHE_S:
            return self._readiness[1]
        reason = await self._check_schema()
        self._readiness = (time.monotonic(), reason)
        return reason

    async def _check_schema(self) -> str | None:
        tables = list(TABLES)
        catalogue = (
            "SELECT count(*) FROM pg_catalog.pg_tables WHERE schemaname = current_schema() AND tablename IN ({})"
            if self.is_postgres
            else "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ({})"
        ).format(", ".join("{}" for _ in tables))
        try:
            rows = await self.fetch(
                f"SELECT (SELECT max(version) FROM market_migrations) AS head, ({catalogue}) AS tables",
                *tables,
            )
        except Exception as exc:
            if "market_migrations" in str(exc):  # no ledger at all: an empty or foreign database
                return "The database has no schema: its migrations have not been applied."
            log.warning("readiness check failed", exc_info=True)
            return "The database is not answering; requests that need it will fail until it is back."
        head, present = rows[0]["head"], int(rows[0]["tables"])
        if head != HEAD:
            return (
                f"The database schema is at migration {head or 'none'}, this code needs {HEAD}: "
                "run `market db migrate` (or deploy the matching version)."
            )
        if present != len(tables):
            return f"The database is missing {len(tables) - present} of the {len(tables)} tables it needs."
        return None

    @contextlib.asynccontextmanager
    async def long_statements(self) -> Any:
        """Inside a transaction: lift the statement timeout for the rest of it (reports over a year of
        events, pruning, bulk loads), without raising it for every request. A no-op on SQLite."""
        if self.is_postgres:
            await self.fetch(f"SET LOCAL statement_timeout = '{LONG_STATEMENT_TIMEOUT}'")
        yield

    def write_transaction(self) -> Any:
        """A transaction for writes. On SQLite it takes the write lock at BEGIN (IMMEDIATE): deferred
        transactions that read then write fail with 'database is locked' under concurrency."""
        if isinstance(self.engine, SQLiteEngine):
            return self.engine.transaction(transaction_type=TransactionType.immediate)
        return self.engine.transaction()

    async def fetch(self, sql: str, *args: Any) -> list[Mapping[str, Any]]:
        """Run raw SQL with `{}` placeholders, in the current transaction if there is one. Rows are read by
        column name (asyncpg Records on PostgreSQL, dicts on SQLite). On SQLite the statement runs through the
        Piccolo engine like any Piccolo query (the traced engine gives it its span); Piccolo's compiler turns the
        template into $n or ? once per template and engine rather than on every call, which cost 40-150 µs of
        CPU a statement, 1.5 ms a checkout (benchmarks/README.md, "Figures behind choices in the code")."""
        if any(isinstance(arg, QueryString | Column) for arg in args):  # nested SQL: compiled as a whole
            return await self.engine.run_querystring(QueryString(sql, *args))
        text = _compiled_template(sql, len(args), self.engine.engine_type)
        if self.is_postgres and self.engine.pool is not None:
            # Straight to asyncpg, measured and traced as the traced engine does (the span shows the compiled
            # text, the histogram point is keyed by the template): Piccolo's run_querystring adds a QueryString,
            # a query id, a compile and two calls to every statement (benchmarks/README.md, browse_vs_floor.py).
            if DbSpans.wanted():
                return await self.spans.traced(text, self._fetch_postgres(text, args))
            return await self.spans.measured(sql, self._fetch_postgres(text, args))
        return await self.engine.run_querystring(_CompiledQuery(sql, text, args))

    async def _fetch_postgres(self, text: str, args: Sequence[Any]) -> list[Any]:
        """In the current transaction's connection if there is one, else on a connection of the pool."""
        transaction = self.engine.current_transaction.get()
        if transaction is not None:
            return await transaction.connection.fetch(text, *args)
        async with self.engine.pool.acquire() as connection:
            return await connection.fetch(text, *args)


class _BoundedPool:
    """The asyncpg pool, with a deadline on every acquire: past it, DatabaseUnavailable (a 503), not a
    request waiting as long as the client cares to."""

    def __init__(self, pool: Any, timeout_s: float) -> None:
        self._pool = pool
        self._timeout_s = timeout_s

    def acquire(self, *, timeout: float | None = None) -> Any:
        if timeout is None and _connected_idle(self._pool):
            # Taken at once, so no deadline to arm: each is a timer scheduled and cancelled on acquire and again
            # on release, on every statement (figures: benchmarks/README.md, "browse_vs_floor.py").
            return self._pool.acquire()
        return _Acquire(self._pool.acquire(timeout=timeout or self._timeout_s))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)


def _connected_idle(pool: Any) -> bool:
    """Whether `pool.acquire()` returns without waiting: the connection it takes next (asyncpg's LIFO queue of
    holders, pinned asyncpg 0.32) is idle and connected. Anything else (none idle, or one to open) keeps the
    deadline. False when asyncpg's internals are not as expected."""
    idle = getattr(getattr(pool, "_queue", None), "_queue", None)
    if not idle:
        return False
    connection = getattr(idle[-1], "_con", None)
    return connection is not None and not connection.is_closed()


class _Acquire:
    def __init__(self, context: Any) -> None:
        self._context = context

    async def __aenter__(self) -> Any:
        try:
            return await self._context.__aenter__()
        except TimeoutError:
            raise DatabaseUnavailable(POOL_EXHAUSTED) from None

    async def __aexit__(self, *exc_info: Any) -> Any:
        return await self._context.__aexit__(*exc_info)

    def __await__(self) -> Any:
        return self.__aenter__().__await__()


@lru_cache(maxsize=1024)
def _compiled_template(template: str, arg_count: int, engine_type: str) -> str:
    """`template` as Piccolo compiles it for `engine_type` (`{}` numbered `$1`, `$2`, ... or `?`)."""
    return QueryString(template, *([None] * arg_count)).compile_string(engine_type=engine_type)[0]


class _CompiledQuery(QueryString):
    """A Piccolo QueryString whose template is already compiled: the engine runs it as it runs any other."""

    def __init__(self, template: str, text: str, args: Sequence[Any]) -> None:
        super().__init__(template)
        self._compiled = (text, list(args))

    def compile_string(self, engine_type: str = "postgres") -> tuple[str, list[Any]]:
        return self._compiled
