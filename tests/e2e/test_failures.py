"""When the database fails under a running server: a 500 that reveals nothing, and readiness says 503.

Each test breaks a server of its own (the shared `live_server` stays healthy)."""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from market.adapters.db.database import READINESS_CACHE_S
from tests.support.live_server import LiveServer, register, start_server, stop_server
from tests.support.postgres import admin_execute, postgres_url

from .helpers import assert_problem, create_item, problem_type

# What must never reach a client in a 5xx body.
LEAKS = (
    "Traceback",
    'File "',
    ".py",
    "Error:",
    "Exception",
    "sqlite3",
    "asyncpg",
    "piccolo",
    "litestar",
    "OperationalError",
    "UndefinedTable",
    "SELECT",
    "FROM items",
    "relation",
    "no such table",
    "/work/",
    "/tmp/",
)


class Broken:
    """A server and a way to break its database."""

    def __init__(self, server: LiveServer, database: str) -> None:
        self.server = server
        self.database = database

    def _sql(self, statement: str) -> None:
        if self.server.engine == "sqlite":
            conn = sqlite3.connect(self.database)
            try:
                conn.execute(statement)
                conn.commit()
            finally:
                conn.close()
            return

        async def run() -> None:
            conn = await asyncpg.connect(postgres_url(self.database))
            try:
                await conn.execute(statement)
            finally:
                await conn.close()

        asyncio.run(run())

    def rename_items_table(self) -> None:
        self._sql("ALTER TABLE items RENAME TO items_moved_away")

    def take_database_away(self) -> None:
        if self.server.engine == "sqlite":
            path = Path(self.database)
            for leftover in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
                leftover.unlink(missing_ok=True)
            path.mkdir()  # a directory where the file was: SQLite cannot open it
            return
        admin_execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def broken(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Broken]:
    if request.param == "sqlite":
        database = str(tmp_path / "market.db")
        server = start_server(f"sqlite:///{database}", tmp_path, "sqlite")
        try:
            yield Broken(server, database)
        finally:
            stop_server(server)
            if os.path.isdir(database):
                shutil.rmtree(database)
        return
    name = f"market_test_{uuid.uuid4().hex[:12]}"
    admin_execute(f'CREATE DATABASE "{name}"')
    try:
        server = start_server(postgres_url(name), tmp_path, "postgresql")
        try:
            yield Broken(server, name)
        finally:
            stop_server(server)
    finally:
        admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_a_lost_table_is_a_503_problem_with_retry_after_that_reveals_nothing(broken):
    with broken.server.client() as client:
        seller = register(client, role="seller")
        item = create_item(client, seller)
        broken.rename_items_table()

        for response in (
            client.get("/api/v1/items"),
            client.get(f"/api/v1/items/{item['id']}"),
            client.get("/api/v1/items", params={"q": "mug"}),
        ):
            # Readiness says the same (tables missing), so a load balancer stops sending traffic here.
            body = assert_problem(response, 503, type_uri=problem_type("service-unavailable"))
            assert int(response.headers["retry-after"]) > 0
            assert body["trace_id"] in body["detail"]  # the reference to quote to support
            for leak in LEAKS:
                assert leak not in response.text, f"{leak!r} leaked in {response.text}"

        # Other routes keep working.
        assert client.get("/api/v1/me", headers={"Authorization": seller["Authorization"]}).status_code == 200


def test_readiness_is_a_503_problem_when_the_database_is_gone(broken):
    with broken.server.client() as client:
        assert client.get("/health/ready").status_code == 200
        broken.take_database_away()
        time.sleep(READINESS_CACHE_S)  # the 200 above is remembered that long
        r = client.get("/health/ready")
        body = assert_problem(r, 503, type_uri=problem_type("service-unavailable"))
        for leak in LEAKS:
            assert leak not in r.text
        assert body["detail"]
        assert client.get("/health/live").status_code == 200
