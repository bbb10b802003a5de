"""Readiness tells the load balancer the truth about the database."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from litestar.testing import TestClient

from market.adapters.db.database import READINESS_CACHE_S, Database
from market.adapters.db.migrations import HEAD, TABLES
from market.bootstrap import build_app
from market.config import Settings
from tests.integration.blocking import execute as _execute
from tests.integration.blocking import locked as _locked
from tests.support.postgres import admin_execute


def _settings(url: str, tmp_path) -> Settings:
    return Settings.from_env({"MARKET_DATABASE_URL": url, "MARKET_VAR_DIR": str(tmp_path)}, dotenv=None)


def test_ready_is_200_while_the_database_answers(database_url, tmp_path):
    with TestClient(build_app(_settings(database_url, tmp_path))) as client:
        response = client.get("/health/ready")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_ready_is_a_503_problem_once_the_database_is_gone(fresh_postgres_url, tmp_path):
    with TestClient(build_app(_settings(fresh_postgres_url, tmp_path))) as client:
        assert client.get("/health/ready").status_code == 200
        name = fresh_postgres_url.rsplit("/", 1)[1]
        admin_execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        time.sleep(READINESS_CACHE_S)  # the 200 above is remembered that long
        response = client.get("/health/ready")
        live = client.get("/health/live")
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == 503 and len(body["trace_id"]) == 32
    assert "asyncpg" not in body["detail"] and "Traceback" not in body["detail"]
    assert live.status_code == 200  # liveness does not depend on the database


def _problem_503(response) -> dict:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert int(response.headers["retry-after"]) > 0
    body = response.json()
    assert body["status"] == 503 and len(body["trace_id"]) == 32
    assert "Traceback" not in body["detail"] and "sqlite" not in body["detail"].lower()
    return body


def test_deleting_the_sqlite_file_makes_ready_and_requests_answer_503_not_500(fresh_sqlite_url, tmp_path):
    path = Path(fresh_sqlite_url.removeprefix("sqlite:///"))
    with TestClient(build_app(_settings(fresh_sqlite_url, tmp_path))) as client:
        assert client.get("/api/v1/items").status_code == 200
        for leftover in path.parent.glob(path.name + "*"):  # the file and its -wal/-shm companions
            leftover.unlink(missing_ok=True)
        time.sleep(READINESS_CACHE_S)
        ready = client.get("/health/ready")
        items = client.get("/api/v1/items")
    assert "schema" in _problem_503(ready)["detail"]
    assert _problem_503(items)["detail"]


def test_ready_is_503_naming_the_migration_when_the_schema_head_is_missing(database_url, tmp_path):
    with TestClient(build_app(_settings(database_url, tmp_path))) as client:
        _execute(database_url, f"DELETE FROM market_migrations WHERE version = '{HEAD}'")
        response = client.get("/health/ready")
    assert HEAD in _problem_503(response)["detail"]


def test_ready_is_503_when_a_table_the_code_needs_is_gone(database_url, tmp_path):
    with TestClient(build_app(_settings(database_url, tmp_path))) as client:
        _execute(database_url, "DROP TABLE analytics_events")
        response = client.get("/health/ready")
    assert "tables" in _problem_503(response)["detail"]


def test_a_database_closed_to_new_connections_makes_requests_answer_503_not_500(fresh_postgres_url, tmp_path):
    # What an operator does before maintenance or a restore: ALLOW_CONNECTIONS false, then end the sessions.
    # Connecting then fails with SQLSTATE 55000 "database … is not currently accepting connections".
    name = fresh_postgres_url.rsplit("/", 1)[1]
    with TestClient(build_app(_settings(fresh_postgres_url, tmp_path))) as client:
        assert client.get("/api/v1/items").status_code == 200
        admin_execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        try:
            admin_execute(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")
            response = client.get("/api/v1/items")
        finally:
            admin_execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    assert "cannot be reached" in _problem_503(response)["detail"]


@pytest.mark.timeout(60)  # before the fix the request waited for the lock as long as it was held
def test_a_table_locked_by_another_connection_answers_503_with_retry_after(fresh_postgres_url, tmp_path):
    with (
        TestClient(build_app(_settings(fresh_postgres_url, tmp_path))) as client,
        _locked(fresh_postgres_url, "items"),
    ):
        response = client.get("/api/v1/items")
    assert "locked" in _problem_503(response)["detail"]


async def test_the_tables_readiness_checks_are_the_tables_the_migrations_create(database_url):
    database = Database(_settings(database_url, Path(".")).database)
    await database.start()
    try:
        await database.migrate()
        catalogue = (
            # Tables, partitioned ones included; their partitions (analytics_events by month) are not tables
            # of their own.
            "SELECT c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND NOT c.relispartition"
            if database.is_postgres
            else "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'items_fts%'"
        )
        names = {row["name"] for row in await database.fetch(catalogue)}
    finally:
        await database.close()
    assert names - {"market_migrations"} == set(TABLES)
