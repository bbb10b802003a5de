"""A migrated, started `Database` on each engine (a fresh database per test), and helpers to fill it."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from market.adapters.db.database import Database
from market.adapters.db.repositories import PiccoloItemRepository, PiccoloUserRepository
from market.config import DatabaseSettings, DatabaseURL
from market.domain.catalog import Item
from market.domain.users import Role, User
from tests.unit.factories import item

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
_serial = itertools.count(1)


def open_database(url: str) -> Database:
    return Database(DatabaseSettings(url=DatabaseURL.parse(url)))


@pytest.fixture
async def bare_db(database_url: str) -> AsyncIterator[Database]:
    """Started, but without migrations."""
    database = open_database(database_url)
    await database.start()
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture
async def db(bare_db: Database) -> AsyncIterator[Database]:
    """Started and migrated."""
    await bare_db.migrate()
    yield bare_db


def new_user(role: Role = Role.SELLER, email: str | None = None, **overrides: Any) -> User:
    n = next(_serial)
    values: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "email": email or f"user{n}-{uuid.uuid4().hex[:6]}@example.com",
        "display_name": f"User {n}",
        "role": role,
        "password_hash": "$argon2id$not-a-real-hash",
        "created_at": T0 + timedelta(microseconds=123_456),
    }
    values.update(overrides)
    return User(**values)


def new_item(seller: User, **overrides: Any) -> Item:
    """The unit tests' item, with a real id and this seller."""
    return item(**{"id": str(uuid.uuid4()), "seller_id": seller.id, "description": "", **overrides})


async def add_user(db: Database, role: Role = Role.SELLER, **overrides: Any) -> User:
    user = new_user(role, **overrides)
    await PiccoloUserRepository(db).add(user)
    return user


async def add_item(db: Database, seller: User, **overrides: Any) -> Item:
    item = new_item(seller, **overrides)
    await PiccoloItemRepository(db).add(item)
    return item


async def count(db: Database, table: str) -> int:
    rows = await db.fetch(f"SELECT count(*) AS n FROM {table}")
    return rows[0]["n"]
