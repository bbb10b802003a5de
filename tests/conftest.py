"""Shared fixtures: fresh databases on both engines (every test database is created here and dropped after), a
migrated `Database` on each, and the process's telemetry."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from market.adapters.db.database import Database
from market.config import Settings
from market.telemetry.setup import Telemetry, install_telemetry
from tests.support.database import open_database
from tests.support.postgres import POSTGRES_ADMIN_URL, admin_execute, postgres_url

# Tests read the spans the service makes; with no exporter configured the service would not record them
# (for the servers tests start, and the process's telemetry below).
os.environ.setdefault("OTEL_TRACES_SAMPLER", "parentbased_always_on")


@pytest.fixture
def fresh_postgres_url() -> Iterator[str]:
    """A new, empty PostgreSQL database for one test; dropped afterwards."""
    name = f"market_test_{uuid.uuid4().hex[:12]}"
    try:
        admin_execute(f'CREATE DATABASE "{name}"')
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(
            f"PostgreSQL at {POSTGRES_ADMIN_URL} is needed for this test (MARKET_TEST_POSTGRES_URL): {exc}"
        )
    try:
        yield postgres_url(name)
    finally:
        admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def fresh_sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'market.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    """The same test on both engines."""
    if request.param == "sqlite":
        return request.getfixturevalue("fresh_sqlite_url")
    return request.getfixturevalue("fresh_postgres_url")


@pytest.fixture
async def bare_db(database_url: str) -> AsyncIterator[Database]:
    """A `Database` on each engine, started, but without migrations."""
    database = open_database(database_url)
    await database.start()
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture
async def db(bare_db: Database) -> AsyncIterator[Database]:
    """A `Database` on each engine, started and migrated."""
    await bare_db.migrate()
    yield bare_db


@pytest.fixture(scope="session", autouse=True)
def telemetry(tmp_path_factory: pytest.TempPathFactory) -> Telemetry:
    """The process's telemetry (one per process, as in production), installed before any test so that apps
    built in tests share it, whatever settings they are built with. Tests read the spans the service makes;
    with no exporter configured the service would not record them, hence the sampler."""
    settings = Settings.from_env(
        {
            "MARKET_VAR_DIR": str(tmp_path_factory.mktemp("telemetry")),
            "OTEL_TRACES_SAMPLER": os.environ["OTEL_TRACES_SAMPLER"],
        },
        dotenv=None,
    )
    return install_telemetry(settings)


@pytest.fixture(scope="session")
def _session_span_exporter(telemetry: Telemetry) -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    telemetry.tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


@pytest.fixture
def span_exporter(_session_span_exporter: InMemorySpanExporter) -> InMemorySpanExporter:
    """Every span finished in this process during the test."""
    _session_span_exporter.clear()
    return _session_span_exporter
