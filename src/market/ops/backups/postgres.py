"""PostgreSQL: `pg_dump -Fc` from an exported snapshot (the row counts in the manifest come from the very same
snapshot), `pg_restore --single-transaction` (stops at the first error and undoes everything), scratch
databases for verification created and dropped on the same server."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Collection, Mapping
from contextlib import asynccontextmanager, suppress
from datetime import UTC
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import asyncpg

from market.config import DatabaseURL

from .base import (
    MIGRATIONS_TABLE,
    TOKEN_VERSION_COLUMN,
    USERS_TABLE,
    Progress,
    Snapshot,
    find_tool,
    quote_identifier,
    run_tool,
)
from .errors import BackupError

LOCK_WAIT_TIMEOUT = "5min"
"""pg_dump gives up (cleanly) if it cannot lock a table for this long, e.g. behind a migration."""

RESTORE_LOCK_TIMEOUT_S = 30
"""How long a restore waits behind another session's lock before it gives up, all undone (the default of
MARKET_BACKUP_LOCK_TIMEOUT)."""

LOCK_POLL_S = 0.2
"""How often a running restore is checked for waiting on a lock."""

# pg_restore's session waiting on a lock, the relation it waits for, and the sessions in its way.
_WAITING = """
    SELECT a.pid, pg_blocking_pids(a.pid) AS blockers,
           (SELECT l.relation::regclass::text FROM pg_locks l
            WHERE l.pid = a.pid AND NOT l.granted AND l.relation IS NOT NULL LIMIT 1) AS relation
    FROM pg_stat_activity a
    WHERE a.application_name = $1 AND a.wait_event_type = 'Lock'
"""
_LOCKERS = """
    SELECT DISTINCT a.pid, a.application_name, a.usename, a.state, a.xact_start
    FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
    WHERE l.relation = to_regclass($1) AND l.granted AND l.pid <> pg_backend_pid() ORDER BY a.pid
"""
_HOLDERS = """
    SELECT pid, application_name, usename, state, xact_start FROM pg_stat_activity
    WHERE pid = ANY($1::int[]) ORDER BY pid
"""

_HAS_TOKEN_VERSIONS = f"""
    SELECT count(*) = 2 FROM information_schema.columns
    WHERE table_schema = current_schema() AND table_name = '{USERS_TABLE}'
      AND column_name IN ('id', '{TOKEN_VERSION_COLUMN}')
"""
_CARRY_TOKEN_VERSIONS = f"""
    UPDATE {USERS_TABLE} u SET {TOKEN_VERSION_COLUMN} = v.version
    FROM unnest($1::uuid[], $2::int[]) AS v(id, version)
    WHERE u.id = v.id AND u.{TOKEN_VERSION_COLUMN} < v.version
"""

_TABLES = """
    SELECT n.nspname AS schema, c.relname AS name, c.relkind = 'p' AS partitioned
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p')
      AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%'
    ORDER BY 1, 2
"""


class PostgresBackend:
    engine = "postgresql"
    payload_name = "database.dump"
    magic = b"PGDMP"
    compresslevel = 0  # the payload is compressed already: gzip only frames it (and checks its CRC)

    def __init__(
        self, url: DatabaseURL, environ: Mapping[str, str], *, lock_timeout_s: float = RESTORE_LOCK_TIMEOUT_S
    ) -> None:
        self.url = url
        self.environ = environ
        self.lock_timeout_s = lock_timeout_s

    async def dump(self, directory: Path, progress: Progress) -> Snapshot:
        pg_dump = find_tool("pg_dump", self.environ)
        payload = directory / self.payload_name
        conn = await _connect(self.url)
        try:
            # The transaction exports its snapshot to pg_dump and counts rows in it, so the manifest
            # describes exactly what was dumped although writes go on.
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                snapshot_id = await conn.fetchval("SELECT pg_export_snapshot()")
                tables = await _tables(conn)
                progress.expect(len(tables))
                argv = [
                    pg_dump,
                    "--format=custom",  # compressed by pg_dump itself, in its own process
                    f"--snapshot={snapshot_id}",
                    f"--lock-wait-timeout={LOCK_WAIT_TIMEOUT}",
                    "--no-password",
                    "--verbose",
                    f"--file={payload}",
                    f"--dbname={self._tool_uri(self.url)}",
                ]
                dumping = asyncio.ensure_future(
                    run_tool(argv, self._tool_env(self.url), _steps(progress, "dumping contents of table "))
                )
                try:
                    counts = {name: await _count(conn, name) for name in tables}
                    head = await _migration_head(conn, tables)
                    version = await conn.fetchval("SHOW server_version")
                    await dumping
                finally:
                    if not dumping.done():
                        dumping.cancel()
                        with suppress(asyncio.CancelledError, BackupError):
                            await dumping
        finally:
            await conn.close()
        return Snapshot(server_version=version, migration_head=head, tables=counts)

    async def validate(self, payload: Path) -> None:
        await self._table_data_entries(payload)

    async def _table_data_entries(self, payload: Path) -> int:
        """Read the archive's table of contents (which pg_restore refuses if damaged)."""
        pg_restore = find_tool("pg_restore", self.environ)
        listing = payload.with_name(payload.name + ".toc")
        await run_tool([pg_restore, "--list", f"--file={listing}", str(payload)], self.environ, _ignore)
        with listing.open(encoding="utf-8", errors="replace") as f:
            return sum(1 for line in f if not line.startswith(";") and " TABLE DATA " in line)

    async def restore(
        self,
        payload: Path,
        target: DatabaseURL,
        progress: Progress,
        *,
        token_versions: Mapping[str, int] | None = None,
    ) -> None:
        await self._pg_restore(payload, target, progress)
        if token_versions:
            # pg_restore commits its own transaction, which nothing can be added to: this follows at once,
            # in a transaction of its own.
            await self._carry_token_versions(target, token_versions)

    async def _pg_restore(self, payload: Path, target: DatabaseURL, progress: Progress) -> None:
        progress.expect(await self._table_data_entries(payload))
        pg_restore = find_tool("pg_restore", self.environ)
        argv = [
            pg_restore,
            "--single-transaction",  # all or nothing: a failure leaves the target as it was
            "--exit-on-error",
            "--clean",
            "--if-exists",
            # Objects belong to whoever restores (the service's role); grants are not carried over.
            "--no-owner",
            "--no-privileges",
            "--no-password",
            "--verbose",
            f"--dbname={self._tool_uri(target)}",
            str(payload),
        ]
        # pg_restore sets lock_timeout = 0 itself (PGOPTIONS cannot bound it), and its --clean drops every table:
        # behind another session's lock (a transaction left open, a long query) it would wait without a word.
        # A watchdog cancels it after lock_timeout_s; its single transaction is then undone.
        env = self._tool_env(target)
        env["PGAPPNAME"] = f"market-restore-{uuid.uuid4().hex[:12]}"
        blocked: list[str] = []
        stop = asyncio.Event()
        watchdog = asyncio.ensure_future(self._cancel_when_blocked(target, env["PGAPPNAME"], blocked, stop))
        try:
            await run_tool(argv, env, _steps(progress, "processing data for table "))
        except BackupError:
            if not blocked:
                raise
            raise BackupError(f"{blocked[0]}; {target.redacted()} was not changed") from None
        finally:
            stop.set()  # it closes its connection itself; cancelled only if it does not within a few polls
            # A watchdog that failed (it could not connect) left the restore to finish as it would without one.
            with suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(watchdog, 10 * LOCK_POLL_S)

    async def _cancel_when_blocked(
        self, target: DatabaseURL, application_name: str, blocked: list[str], stop: asyncio.Event
    ) -> None:
        """Watch the restore's session (by its application name); once it has waited for a lock for
        lock_timeout_s, put what it waited for, in words, in `blocked` and cancel its statement. Runs until
        `stop` is set otherwise."""
        conn = await _connect(target)
        try:
            waiting_since: float | None = None
            loop = asyncio.get_running_loop()
            while not stop.is_set():
                row = await conn.fetchrow(_WAITING, application_name)
                if row is None or not row["blockers"]:
                    waiting_since = None
                elif waiting_since is None:
                    waiting_since = loop.time()
                elif loop.time() - waiting_since >= self.lock_timeout_s:
                    holders = await conn.fetch(_HOLDERS, list(row["blockers"]))
                    blocked.append(self._gave_up(row["relation"] or "the database", holders))
                    await conn.fetchval("SELECT pg_cancel_backend($1)", row["pid"])
                    return
                with suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), LOCK_POLL_S)
        finally:
            await conn.close()

    async def token_versions(self, target: DatabaseURL) -> dict[str, int]:
        conn = await _connect(target, lock_timeout_s=self.lock_timeout_s)
        try:
            if not await conn.fetchval(_HAS_TOKEN_VERSIONS):
                return {}
            rows = await conn.fetch(f"SELECT id, {TOKEN_VERSION_COLUMN} FROM {USERS_TABLE}")
        except asyncpg.PostgresError as exc:
            raise BackupError(f"cannot read {USERS_TABLE} in {target.redacted()}: {exc}") from None
        finally:
            await conn.close()
        return {str(row[0]): row[1] for row in rows}

    async def _carry_token_versions(self, target: DatabaseURL, token_versions: Mapping[str, int]) -> None:
        conn = await _connect(target, lock_timeout_s=self.lock_timeout_s)
        try:
            if await conn.fetchval(_HAS_TOKEN_VERSIONS):
                await conn.execute(_CARRY_TOKEN_VERSIONS, list(token_versions), list(token_versions.values()))
        except asyncpg.PostgresError as exc:
            raise BackupError(
                f"restored, but the token versions of before could not be carried over ({exc}): tokens "
                "revoked since the backup was taken may work again; revoke them (market users set-password, "
                "disable)"
            ) from None
        finally:
            await conn.close()

    @asynccontextmanager
    async def scratch(self, workdir: Path) -> AsyncIterator[DatabaseURL]:
        name = f"{self.url.name[:40]}_verify_{uuid.uuid4().hex[:10]}"
        conn = await _connect(self.url)
        try:
            await conn.execute(f"CREATE DATABASE {quote_identifier(name)} TEMPLATE template0")
        except asyncpg.InsufficientPrivilegeError:
            raise BackupError(
                "verify and restore test-restore into a scratch database: grant CREATEDB to the role in "
                "MARKET_DATABASE_URL"
            ) from None
        finally:
            await conn.close()
        try:
            parts = urlsplit(self.url.dsn)
            yield DatabaseURL.parse(parts._replace(path="/" + quote(name)).geturl())
        finally:
            conn = await _connect(self.url)
            try:
                await conn.execute(f"DROP DATABASE IF EXISTS {quote_identifier(name)} WITH (FORCE)")
            finally:
                await conn.close()

    async def check(self, target: DatabaseURL) -> None:
        """pg_restore's own checks (constraints, indexes rebuilt) are the check."""

    async def count_rows(self, target: DatabaseURL, *, also: Collection[str] = ()) -> dict[str, int]:
        conn = await _connect(target)
        try:
            relations = await _relations(conn)
            return {
                name: await _count(conn, name)
                for name, partitioned in relations.items()
                if not partitioned or name in also
            }
        finally:
            await conn.close()

    async def migrations(self, target: DatabaseURL) -> list[str] | None:
        conn = await _connect(target)
        try:
            if MIGRATIONS_TABLE not in await _tables(conn):
                return None
            try:
                rows = await conn.fetch(f"SELECT version FROM {MIGRATIONS_TABLE}")
            except asyncpg.PostgresError as exc:
                raise BackupError(f"its {MIGRATIONS_TABLE} table is not market's ({exc})") from None
            return sorted(row[0] for row in rows)
        finally:
            await conn.close()

    async def business_rows(self, target: DatabaseURL) -> dict[str, int]:
        """Read before a restore (forced or not): behind another session's exclusive lock (a migration, a LOCK
        TABLE) it gives up after lock_timeout_s, naming that session, rather than wait without a word."""
        conn = await _connect(target, lock_timeout_s=self.lock_timeout_s)
        try:
            found = {}
            for name in await _tables(conn):
                try:
                    if name != MIGRATIONS_TABLE and await conn.fetchval(
                        f"SELECT EXISTS (SELECT FROM {_sql(name)})"
                    ):
                        found[name] = await _count(conn, name)
                except asyncpg.LockNotAvailableError:
                    holders = await conn.fetch(_LOCKERS, _sql(name))
                    raise BackupError(self._gave_up(name, holders)) from None
            return found
        finally:
            await conn.close()

    def _gave_up(self, relation: str, holders: Collection[asyncpg.Record]) -> str:
        return (
            f"gave up after waiting {self.lock_timeout_s:g} s for a lock on {relation} held by "
            f"{_sessions(holders)} (end that session, or raise MARKET_BACKUP_LOCK_TIMEOUT)"
        )

    def _tool_uri(self, url: DatabaseURL) -> str:
        """The URL for libpq without its password (which goes in PGPASSWORD, not on a command line)."""
        assert url.dsn is not None
        parts = urlsplit(url.dsn)
        if parts.password is None:
            return url.dsn
        netloc = parts.netloc.rpartition("@")[2]
        user = parts.netloc.rpartition("@")[0].partition(":")[0]
        return parts._replace(netloc=f"{user}@{netloc}").geturl()

    def _tool_env(self, url: DatabaseURL) -> dict[str, str]:
        env = dict(self.environ)
        env.setdefault("PGAPPNAME", "market-backup")
        password = urlsplit(url.dsn or "").password
        if password is not None:
            env["PGPASSWORD"] = unquote(password)
        return env


def _sessions(rows: Collection[asyncpg.Record]) -> str:
    """'session 4242 (market-serve, user market, idle in transaction since 12:00:03Z)', and so on."""
    described = []
    for row in rows:
        since = row["xact_start"].astimezone(UTC).strftime(" since %H:%M:%SZ") if row["xact_start"] else ""
        app = f"{row['application_name']}, " if row["application_name"] else ""
        described.append(f"session {row['pid']} ({app}user {row['usename']}, {row['state']}{since})")
    return ", ".join(described) or "another session"


async def _connect(url: DatabaseURL, *, lock_timeout_s: float | None = None) -> asyncpg.Connection:
    settings = {} if lock_timeout_s is None else {"lock_timeout": f"{round(lock_timeout_s * 1000)}ms"}
    try:
        return await asyncpg.connect(url.dsn, server_settings=settings)
    except asyncpg.InvalidCatalogNameError:
        raise BackupError(
            f"the database {url.name!r} does not exist on the server; create it first"
        ) from None
    except (OSError, asyncpg.PostgresError) as exc:
        raise BackupError(f"cannot connect to {url.redacted()}: {exc}") from None


async def _relations(conn: asyncpg.Connection) -> dict[str, bool]:
    """Every table, and whether it is partitioned (a parent holding no rows of its own)."""
    rows = await conn.fetch(_TABLES)
    return {
        row["name"] if row["schema"] == "public" else f"{row['schema']}.{row['name']}": row["partitioned"]
        for row in rows
    }


async def _tables(conn: asyncpg.Connection) -> list[str]:
    """The tables holding rows: a partitioned table's rows are its partitions', and counting both counted
    them twice (analytics_events)."""
    return [name for name, partitioned in (await _relations(conn)).items() if not partitioned]


def _sql(name: str) -> str:
    return ".".join(quote_identifier(part) for part in name.split(".", 1))


async def _count(conn: asyncpg.Connection, name: str) -> int:
    return await conn.fetchval(f"SELECT count(*) FROM {_sql(name)}")


async def _migration_head(conn: asyncpg.Connection, tables: list[str]) -> str | None:
    if MIGRATIONS_TABLE not in tables:
        return None
    return await conn.fetchval(f"SELECT max(version) FROM {MIGRATIONS_TABLE}")


def _steps(progress: Progress, marker: str) -> Callable[[str], None]:
    def on_line(line: str) -> None:
        _, found, table = line.partition(marker)
        if found:
            progress.step(table.strip('"'))

    return on_line


def _ignore(line: str) -> None:
    pass
