"""Rows to domain objects, shared by the repositories and the search queries."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from market.domain.catalog import Item, ItemStatus
from market.domain.users import Role, User


def parse_id(value: str) -> str | None:
    """The canonical form of a UUID, or None for anything that is not one (a malformed id is a 404)."""
    try:
        return str(uuid.UUID(value))
    except (ValueError, TypeError, AttributeError):
        return None


def user_from_row(row: Mapping[str, Any]) -> User:
    return User(
        id=str(row["id"]),
        email=row["email"],
        display_name=row["display_name"],
        role=Role(row["role"]),
        password_hash=row["password_hash"],
        created_at=row["created_at"],
    )


def item_from_row(row: Mapping[str, Any]) -> Item:
    return Item(
        id=str(row["id"]),
        seller_id=str(row["seller_id"]),
        title=row["title"],
        description=row["description"],
        price_cents=row["price_cents"],
        currency=row["currency"],
        stock=row["stock"],
        category=row["category"],
        status=ItemStatus(row["status"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )
