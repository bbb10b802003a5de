"""Starting and stopping the app, again and again, with the database healthy, locked, slow or gone: every stop
returns (pytest-timeout fails a hang fast) and no connection is left `idle in transaction`.

Issue 11: a stop hung for minutes because a background task cancelled in the middle of BEGIN never gave its
connection back, and closing the pool waits for every connection."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from pathlib import Path

import asyncpg
import pytest
from litestar.testing import TestClient

from market.adapters.db.database import Database
from market.adapters.db.errors import DatabaseUnavailable
from market.bootstrap import build_app
from market.config import Settings
from tests.integration.blocking import idle_in_transaction, locked
from tests.support.postgres import admin_execute, postgres_url

CYCLES = 20


def _settings(url: str, tmp_path: Path, **env: str) -> Settings:
    return Settings.from_env(
        {"MARKET_DATABASE_URL": url, "MARKET_VAR_DIR": str(tmp_path), "MARKET_RATE_LIMITS": "off", **env},
        dotenv=None,
    )


def _cycle(settings: Settings, path: str = "/api/v1/items") -> int:
    """Start the app, make one request, stop it. The status of the request."""
    with TestClient(build_app(settings)) as client:
        return client.get(path).status_code


def test_the_app_starts_and_stops_again_and_again(database_url, tmp_path):
    statuses = [_cycle(_settings(database_url, tmp_path)) for _ in range(CYCLES)]
    assert statuses == [200] * CYCLES
    if database_url.startswith("postgresql"):
        assert idle_in_transaction(database_url) == []


def test_the_app_stops_while_a_table_it_reads_is_locked(fresh_postgres_url, tmp_path):
    settings = _settings(fresh_postgres_url, tmp_path)
    _cycle(settings)  # migrated before the lock is taken
    with locked(fresh_postgres_url, "items"):
        statuses = [_cycle(settings) for _ in range(5)]
    assert statuses == [503] * 5
    assert idle_in_transaction(fresh_postgres_url) == []


def test_the_app_refuses_to_start_while_another_process_holds_the_sqlite_write_lock(
    fresh_sqlite_url, tmp_path
):
    settings = _settings(fresh_sqlite_url, tmp_path)
    _cycle(settings)
    with locked(fresh_sqlite_url):
        for _ in range(5):
            with pytest.raises(Exception) as failure:  # the start's migration check waits the busy timeout
                _cycle(settings)
            assert failure.group_contains(sqlite3.OperationalError, match="locked")
    assert _cycle(settings) == 200


def test_the_app_stops_while_its_background_work_waits_on_a_slow_database(fresh_postgres_url, tmp_path):
    # Locks that are never given up in time: the background tasks (business gauges, webhook worker) are
    # still waiting for them when the app stops, and must be cancelled and give their connections back.
    settings = _settings(fresh_postgres_url, tmp_path, MARKET_DATABASE_LOCK_TIMEOUT="60")
    _cycle(settings)
    with locked(fresh_postgres_url, "analytics_events", "webhook_deliveries"):
        for _ in range(5):
            _cycle(settings, "/health/live")
    assert idle_in_transaction(fresh_postgres_url) == []


def test_the_app_stops_after_its_postgresql_database_is_dropped(tmp_path):
    for _ in range(5):
        name = f"market_test_{uuid.uuid4().hex[:12]}"
        admin_execute(f'CREATE DATABASE "{name}"')
        try:
            with TestClient(build_app(_settings(postgres_url(name), tmp_path))) as client:
                assert client.get("/api/v1/items").status_code == 200
                admin_execute(f'DROP DATABASE "{name}" WITH (FORCE)')
                assert client.get("/api/v1/items").status_code == 503
        finally:
            admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_the_app_stops_after_its_sqlite_file_is_deleted(fresh_sqlite_url, tmp_path):
    path = Path(fresh_sqlite_url.removeprefix("sqlite:///"))
    for _ in range(5):
        with TestClient(build_app(_settings(fresh_sqlite_url, tmp_path))) as client:
            assert client.get("/api/v1/items").status_code == 200
            for leftover in path.parent.glob(path.name + "*"):
                leftover.unlink(missing_ok=True)
            assert client.get("/api/v1/items").status_code == 503


def test_a_start_on_a_database_that_does_not_exist_fails_without_hanging(tmp_path):
    settings = _settings(postgres_url(f"market_missing_{uuid.uuid4().hex[:12]}"), tmp_path)
    for _ in range(5):
        with pytest.raises(Exception) as failure:
            _cycle(settings)
        assert failure.group_contains(asyncpg.InvalidCatalogNameError)


async def test_a_transaction_cancelled_at_any_moment_gives_its_connection_back(fresh_postgres_url):
    """Cancel a task after 0, 1, 2... turns of the event loop: in BEGIN, in the query, in COMMIT. Every
    connection must be back in the pool, and nothing left idle in transaction."""
    database = Database(_settings(fresh_postgres_url, Path(".")).database)
    await database.start()
    try:
        await database.migrate()

        async def work() -> None:
            async with database.engine.transaction():
                await database.fetch("SELECT count(*) FROM items")

        for turns in range(60):
            task = asyncio.create_task(work())
            for _ in range(turns):
                await asyncio.sleep(0)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            pool = database.engine.pool
            assert pool.get_idle_size() == pool.get_size(), f"a connection was kept after {turns} turns"
    finally:
        await database.close()
    assert await asyncio.to_thread(idle_in_transaction, fresh_postgres_url) == []


@pytest.mark.timeout(30)  # before: close() waited for the connection as long as it was kept
async def test_closing_the_pool_does_not_wait_for_a_connection_that_is_never_given_back(fresh_postgres_url):
    database = Database(_settings(fresh_postgres_url, Path(".")).database)
    await database.start()
    pool = database.engine.pool
    await pool.acquire()  # and never released
    await database.close()
    assert pool.get_size() == 0  # the kept connection was terminated


async def test_a_request_waits_for_a_pooled_connection_only_up_to_the_pool_timeout(fresh_postgres_url):
    settings = _settings(
        fresh_postgres_url, Path("."), MARKET_DATABASE_POOL_SIZE="1", MARKET_DATABASE_POOL_TIMEOUT="1"
    )
    database = Database(settings.database)
    await database.start()
    try:
        kept = await database.engine.pool.acquire()
        with pytest.raises(DatabaseUnavailable, match="No database connection became free"):
            await database.ping()
        await database.engine.pool.release(kept)
        await database.ping()
    finally:
        await database.close()
