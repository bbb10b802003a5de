"""Domain objects with sensible defaults, for unit tests."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from market.domain.catalog import Item, ItemStatus
from market.domain.users import Role, User

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def user(role: Role = Role.SELLER, user_id: str = "seller-1", email: str | None = None) -> User:
    return User(
        id=user_id,
        email=email or f"{user_id}@example.com",
        display_name=user_id,
        role=role,
        password_hash="hashed:correct horse battery",
        created_at=T0,
    )


def item(**overrides: Any) -> Item:
    values: dict[str, Any] = {
        "id": "item-1",
        "seller_id": "seller-1",
        "title": "Blue mug",
        "description": "A blue ceramic mug.",
        "price_cents": 1999,
        "currency": "EUR",
        "stock": 5,
        "category": "kitchen",
        "status": ItemStatus.ACTIVE,
        "created_at": T0,
        "updated_at": T0,
    }
    values.update(overrides)
    return Item(**values)


def item_fields(**overrides: Any) -> dict[str, Any]:
    """What a seller sends to list an item."""
    fields: dict[str, Any] = {
        "title": "Blue mug",
        "description": "A blue ceramic mug.",
        "price_cents": 1999,
        "currency": "EUR",
        "stock": 5,
        "category": "kitchen",
    }
    fields.update(overrides)
    return fields
