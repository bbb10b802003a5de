"""The one infrastructure error of the database adapters: the database cannot serve a request right now.

Driver errors that mean "not now" rather than "this is a bug" (a statement or lock timeout, no pooled
connection free in time, SQLite busy, a transaction PostgreSQL aborted to break a deadlock or a serialization
conflict, the database or its schema gone) are recognised here, in one place,
and answered as a 503 with Retry-After by the HTTP adapter (adapters/http/problems.py). So are the errors that
mean the configured database cannot be used at all, which a command or the server's start-up reports in one
line (`unusable_database`)."""

from __future__ import annotations

import sqlite3

import asyncpg


class DatabaseUnavailable(Exception):
    """The database cannot answer this request now; trying again later may work. `detail` is plain words
    for the client, free of SQL, hosts and driver names."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


POOL_EXHAUSTED = "No database connection became free in time; the service is overloaded."
STATEMENT_TIMEOUT = "A database query took too long and was cancelled."
LOCK_TIMEOUT = "The data this request needs is locked by other work (a migration, a backup or a long query)."
BUSY = "The database is busy with another write."
CONTENDED = "Another request was changing the same data at the same moment."
UNREACHABLE = "The database cannot be reached."
NO_SCHEMA = "The database has lost its tables (deleted, replaced or not migrated)."


def database_unavailable(exc: BaseException) -> DatabaseUnavailable | None:
    """`exc` (or what caused it) as a DatabaseUnavailable, or None when it is something else."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        found = _classify(current)
        if found is not None:
            return found
        current = current.__cause__ or current.__context__
    return None


def unavailable_reason(exc: BaseException) -> str | None:
    """The plain words of `database_unavailable(exc)`, or None: what the HTTP adapter answers a 503 with."""
    found = database_unavailable(exc)
    return None if found is None else found.detail


def _classify(exc: BaseException) -> DatabaseUnavailable | None:
    if isinstance(exc, DatabaseUnavailable):
        return exc
    if isinstance(exc, asyncpg.LockNotAvailableError):  # lock_timeout (55P03)
        return DatabaseUnavailable(LOCK_TIMEOUT)
    if isinstance(exc, asyncpg.QueryCanceledError):  # statement_timeout (57014)
        return DatabaseUnavailable(STATEMENT_TIMEOUT)
    # PostgreSQL rolled the transaction back to break a deadlock (40P01) or a serialization conflict (40001):
    # the same request again is expected to pass. Lock ordering should make these rare (adapters/db/commerce.py);
    # when one happens it is still reported as a 5xx, so a lock-order bug gets seen.
    if isinstance(exc, asyncpg.DeadlockDetectedError | asyncpg.SerializationError):
        return DatabaseUnavailable(CONTENDED)
    if isinstance(
        exc,
        asyncpg.PostgresConnectionError  # class 08, ConnectionDoesNotExistError included
        | asyncpg.OperatorInterventionError  # server shutting down, database dropped under us
        | asyncpg.InvalidCatalogNameError  # the database no longer exists
        | ConnectionRefusedError,
    ):
        return DatabaseUnavailable(UNREACHABLE)
    if _refuses_connections(exc) or _lost_under_the_driver(exc):
        return DatabaseUnavailable(UNREACHABLE)
    if isinstance(exc, asyncpg.UndefinedTableError):
        return DatabaseUnavailable(NO_SCHEMA)
    if isinstance(exc, sqlite3.OperationalError):
        message = str(exc).lower()
        if "locked" in message or "busy" in message:
            return DatabaseUnavailable(BUSY)
        if "no such table" in message:
            return DatabaseUnavailable(NO_SCHEMA)
        if "unable to open" in message or "disk i/o" in message:
            return DatabaseUnavailable(UNREACHABLE)
    return None


def _refuses_connections(exc: BaseException) -> bool:
    """PostgreSQL takes no new connection now: max_connections reached (53300), or the database closed to
    connections (ALLOW_CONNECTIONS false, before maintenance or a restore: 55000, a code shared with bugs such
    as "lastval is not yet defined", so only that refusal counts)."""
    return isinstance(exc, asyncpg.TooManyConnectionsError) or (
        isinstance(exc, asyncpg.ObjectNotInPrerequisiteStateError) and "accepting connections" in str(exc)
    )


def _lost_under_the_driver(exc: BaseException) -> bool:
    """asyncpg's words for a connection the server ended (pg_terminate_backend, a restart) when the loss shows
    mid-call rather than as ConnectionDoesNotExistError: a pooled connection still reading the server's farewell
    error (protocol state 2, "error consume") when a request began on it, or a call on a connection already
    closed. Other InternalClientErrors and InterfaceErrors (using one connection from two tasks, say) are bugs."""
    message = str(exc)
    return (
        isinstance(exc, asyncpg.InternalClientError) and "another operation (2) is in progress" in message
    ) or (isinstance(exc, asyncpg.InterfaceError) and message.endswith("connection is closed"))


def unusable_database(exc: BaseException, database: str) -> str | None:
    """One line saying why the database named `database` (its URL, password masked) cannot be used at all, when
    `exc`, its cause or an error it groups says so: nothing answers at its address, it refuses our role or
    database name, its file is no SQLite database or a damaged one, or another process keeps the file locked.
    None for anything else (a bug keeps its traceback)."""
    if isinstance(exc, BaseExceptionGroup):
        found = (unusable_database(inner, database) for inner in exc.exceptions)
        return next((line for line in found if line is not None), None)
    if isinstance(
        exc,
        OSError  # refused, timed out, no such host; a SQLite file that cannot be created or opened
        | asyncpg.InvalidCatalogNameError
        | asyncpg.InvalidAuthorizationSpecificationError,  # no such role, wrong password
    ) or (isinstance(exc, sqlite3.OperationalError) and "unable to open" in str(exc).lower()):
        return f"cannot reach the database {database}: {exc}"
    if _refuses_connections(exc):
        return f"cannot reach the database {database}: {exc}"
    if isinstance(exc, sqlite3.DatabaseError) and _sqlite_code(exc) in (
        sqlite3.SQLITE_NOTADB,
        sqlite3.SQLITE_CORRUPT,
    ):
        return f"cannot use the database {database}: {exc}"
    if isinstance(exc, sqlite3.OperationalError) and _sqlite_code(exc) in (
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
    ):  # still locked when the busy timeout ran out: another process holds the file's write lock
        return f"cannot use the database {database}: {exc} (another process is holding it)"
    return None if exc.__cause__ is None else unusable_database(exc.__cause__, database)


def _sqlite_code(exc: sqlite3.Error) -> int | None:
    """The primary result code (SQLITE_CORRUPT for SQLITE_CORRUPT_INDEX, ...)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else code & 0xFF
