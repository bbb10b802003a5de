"""Fixtures of the backup tests: `market backup` and the engine, on a fresh database of each engine; sample
archives of each engine."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import subprocess
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pytest

from market.config import DatabaseURL
from market.ops.backups.service import BackupService
from tests.support.backups import (
    Market,
    archive_members,
    other_postgres_url,
    pack_archive,
    postgres_sql,
    seed,
)


@pytest.fixture
def market(database_url: str, tmp_path: Path) -> Market:
    """`market backup` on a fresh database of each engine (not yet migrated)."""
    return Market(database_url, tmp_path / "backups")


@pytest.fixture
def engine(database_url: str) -> str:
    """The engine of this run of the test: `sqlite` or `postgresql`."""
    return DatabaseURL.parse(database_url).engine


def _archive_per_engine(directory: Path, prepare: Callable[[str], None]) -> dict[str, Path]:
    """One archive per engine, made by `market backup create`'s service from a new database `prepare` filled."""
    archives = {}
    for engine in ("sqlite", "postgresql"):
        source = (
            iter([f"sqlite:///{directory / 'source.db'}"]) if engine == "sqlite" else other_postgres_url()
        )
        url = next(source)
        prepare(url)
        archives[engine] = asyncio.run(
            BackupService(DatabaseURL.parse(url), directory / engine).create()
        ).path
        next(source, None)  # drops a PostgreSQL source database
    return archives


@pytest.fixture(scope="module")
def good_archives(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One sound backup per engine (300 items), made once for the module."""
    return _archive_per_engine(tmp_path_factory.mktemp("good"), lambda url: seed(url, items=300))


def _foreign(url: str) -> None:
    statements = ["CREATE TABLE users (x integer)", "INSERT INTO users VALUES (1)"]
    if url.startswith("sqlite"):
        with closing(sqlite3.connect(DatabaseURL.parse(url).path)) as db:
            for statement in statements:
                db.execute(statement)
            db.commit()
    else:
        for statement in statements:
            postgres_sql(url, statement)


@pytest.fixture(scope="module")
def foreign_archives(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Per engine, a sound backup of a database that is not market's: one table `users (x)`, one row."""
    return _archive_per_engine(tmp_path_factory.mktemp("foreign"), _foreign)


@pytest.fixture(scope="module")
def foreign_ledger_archives(
    tmp_path_factory: pytest.TempPathFactory, foreign_archives: dict[str, Path]
) -> dict[str, Path]:
    """Per engine, the foreign archive with a `market_migrations` table of another shape (no `version`
    column) added to its database, checksums and row counts updated: `create` itself would refuse to read it."""
    directory = tmp_path_factory.mktemp("foreign-ledger")
    statements = [
        "CREATE TABLE market_migrations (name text)",
        "INSERT INTO market_migrations VALUES ('0001_initial')",
    ]
    archives = {}
    for engine, good in foreign_archives.items():
        members = archive_members(good)
        if engine == "sqlite":
            path = directory / "foreign.db"
            path.write_bytes(members["database.sqlite3"])
            with closing(sqlite3.connect(path)) as db:
                for statement in statements:
                    db.execute(statement)
                db.commit()
            payload = "database.sqlite3"
            members[payload] = path.read_bytes()
        else:
            source = other_postgres_url()
            url = next(source)
            postgres_sql(url, "CREATE TABLE users (x integer)")
            postgres_sql(url, "INSERT INTO users VALUES (1)")
            for statement in statements:
                postgres_sql(url, statement)
            payload = "database.dump"
            members[payload] = subprocess.run(["pg_dump", "-Fc", url], check=True, capture_output=True).stdout
            next(source, None)
        manifest = json.loads(members["manifest.json"])
        manifest["files"] = {payload: hashlib.sha256(members[payload]).hexdigest()}
        manifest["tables"]["market_migrations"] = 1
        members["manifest.json"] = json.dumps(manifest).encode()
        archives[engine] = directory / engine / good.name
        archives[engine].parent.mkdir(exist_ok=True)
        pack_archive(archives[engine], members)
    return archives
