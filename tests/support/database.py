"""A `Database` on a URL, and rows put straight into it through the repositories (adapter tests)."""

from __future__ import annotations

import itertools
import uuid
from datetime import timedelta
from typing import Any

from market.adapters.db.database import Database
from market.adapters.db.repositories import PiccoloItemRepository, PiccoloUserRepository
from market.config import DatabaseSettings, DatabaseURL
from market.domain.catalog import Item
from market.domain.users import Role, User
from tests.support.factories import T0, item

_serial = itertools.count(1)


def open_database(url: str) -> Database:
    """A `Database` on `url`, not started."""
    return Database(DatabaseSettings(url=DatabaseURL.parse(url)))


def new_user(role: Role = Role.SELLER, email: str | None = None, **overrides: Any) -> User:
    """A user with a unique id and email (microseconds in `created_at`: the engines must keep them)."""
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
    """A new user, stored."""
    user = new_user(role, **overrides)
    await PiccoloUserRepository(db).add(user)
    return user


async def add_item(db: Database, seller: User, **overrides: Any) -> Item:
    """A new item of `seller`, stored."""
    item = new_item(seller, **overrides)
    await PiccoloItemRepository(db).add(item)
    return item


async def count(db: Database, table: str) -> int:
    """The number of rows in `table`."""
    rows = await db.fetch(f"SELECT count(*) AS n FROM {table}")
    return rows[0]["n"]
