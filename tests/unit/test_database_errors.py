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
        TimeoutError(),
    ],
)
def test_bugs_and_other_errors_are_not_unavailability(error):
    assert database_unavailable(error) is None
