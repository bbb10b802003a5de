"""Which driver errors mean "the database cannot serve this now" (a 503), and which are bugs (a 500)."""

from __future__ import annotations

import sqlite3

import asyncpg
import pytest

from market.adapters.db.errors import (
    BUSY,
    CONTENDED,
    LOCK_TIMEOUT,
    NO_SCHEMA,
    STATEMENT_TIMEOUT,
    UNREACHABLE,
    DatabaseUnavailable,
    database_unavailable,
    unusable_database,
)


@pytest.mark.parametrize(
    ("error", "detail"),
    [
        (asyncpg.LockNotAvailableError("canceling statement due to lock timeout"), LOCK_TIMEOUT),
        (asyncpg.QueryCanceledError("canceling statement due to statement timeout"), STATEMENT_TIMEOUT),
        (asyncpg.DeadlockDetectedError("deadlock detected"), CONTENDED),
        (asyncpg.SerializationError("could not serialize access due to concurrent update"), CONTENDED),
        (asyncpg.InvalidCatalogNameError('database "x" does not exist'), UNREACHABLE),
        (asyncpg.AdminShutdownError("terminating connection due to administrator command"), UNREACHABLE),
        (
            asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
            UNREACHABLE,
        ),
        (ConnectionRefusedError(111, "Connection refused"), UNREACHABLE),
        (
            asyncpg.ObjectNotInPrerequisiteStateError('database "m" is not currently accepting connections'),
            UNREACHABLE,
        ),
        (asyncpg.TooManyConnectionsError("sorry, too many clients already"), UNREACHABLE),
        # the server ended a pooled connection and a request began on it before the driver noticed
        (
            asyncpg.InternalClientError("cannot switch to state 11; another operation (2) is in progress"),
            UNREACHABLE,
        ),
        (
            asyncpg.InterfaceError("cannot call Transaction.rollback(): the underlying connection is closed"),
            UNREACHABLE,
        ),
        (asyncpg.InterfaceError("connection is closed"), UNREACHABLE),
        (sqlite3.OperationalError("database is locked"), BUSY),
        (sqlite3.OperationalError("no such table: items"), NO_SCHEMA),
        (asyncpg.UndefinedTableError('relation "items" does not exist'), NO_SCHEMA),
    ],
)
def test_timeouts_locks_lost_races_and_a_lost_database_are_unavailability(error, detail):
    found = database_unavailable(error)
    assert found is not None and found.detail == detail


def test_the_cause_of_a_wrapping_error_is_looked_at():
    try:
        try:
            raise sqlite3.OperationalError("database is locked")
        except sqlite3.OperationalError as exc:
            raise RuntimeError("query failed") from exc
    except RuntimeError as wrapped:
        found = database_unavailable(wrapped)
    assert found is not None and found.detail == BUSY


def test_an_unavailability_raised_as_such_is_kept():
    error = DatabaseUnavailable("No database connection became free in time.")
    assert database_unavailable(error) is error


@pytest.mark.parametrize(
    "error",
    [
        ValueError("bug"),
        sqlite3.OperationalError('near "SELEC": syntax error'),
        asyncpg.UniqueViolationError("duplicate key"),
        asyncpg.ObjectNotInPrerequisiteStateError("lastval is not yet defined in this session"),
        TimeoutError(),
        asyncpg.InterfaceError(
            "cannot perform operation: another operation is in progress"
        ),  # two tasks, one conn
        asyncpg.InternalClientError("cannot switch to state 12; another operation (11) is in progress"),
    ],
)
def test_bugs_and_other_errors_are_not_unavailability(error):
    assert database_unavailable(error) is None


def _sqlite_error(
    message: str, code: int, kind: type[sqlite3.DatabaseError] = sqlite3.DatabaseError
) -> sqlite3.DatabaseError:
    error = kind(message)
    error.sqlite_errorcode = code
    return error


@pytest.mark.parametrize(
    ("error", "line"),
    [
        (ConnectionRefusedError(111, "Connection refused"), "cannot reach the database DB: [Errno 111]"),
        (
            asyncpg.InvalidPasswordError("password authentication failed"),
            "cannot reach the database DB: pass",
        ),
        (sqlite3.OperationalError("unable to open database file"), "cannot reach the database DB: unable"),
        (_sqlite_error("file is not a database", sqlite3.SQLITE_NOTADB), "cannot use the database DB: file"),
        (_sqlite_error("database disk image is malformed", 779), "cannot use the database DB: database disk"),
        (
            _sqlite_error("database is locked", sqlite3.SQLITE_BUSY, sqlite3.OperationalError),
            "cannot use the database DB: database is locked (another process is holding it)",
        ),
        (
            ExceptionGroup("lifespan", [ValueError("x"), OSError("no route")]),
            "cannot reach the database DB: no",
        ),
    ],
)
def test_a_database_that_cannot_be_used_at_all_is_said_in_one_line(error, line):
    assert (unusable_database(error, "DB") or "").startswith(line)


def test_the_cause_of_a_wrapping_error_says_the_database_cannot_be_used():
    try:
        try:
            raise _sqlite_error("file is not a database", sqlite3.SQLITE_NOTADB)
        except sqlite3.DatabaseError as exc:
            raise RuntimeError("migration failed") from exc
    except RuntimeError as wrapped:
        assert unusable_database(wrapped, "DB") == "cannot use the database DB: file is not a database"


@pytest.mark.parametrize(
    "error",
    [
        ValueError("bug"),
        sqlite3.OperationalError("no such table: items"),
        sqlite3.IntegrityError("UNIQUE constraint failed: users.email"),
        asyncpg.UniqueViolationError("duplicate key"),
        ExceptionGroup("lifespan", [ValueError("bug")]),
    ],
)
def test_other_errors_keep_their_traceback(error):
    assert unusable_database(error, "DB") is None
