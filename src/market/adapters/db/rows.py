"""Rows to domain objects, shared by the repositories and the search queries."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping
from typing import Any

from market.domain.catalog import Item, ItemStatus
from market.domain.users import Role, User, UserStatus


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
        token_version=row["token_version"],
        status=UserStatus(row["status"]),
        last_login_at=row["last_login_at"],
    )


# A dict lookup instead of calling the enum, whose cost every row of every page pays; unknown values
# still go through `ItemStatus(...)` and raise.
_ITEM_STATUSES = {status.value: status for status in ItemStatus}

# Items are built from rows on every browse and search page (20-100 per request). The `__init__` of a frozen
# dataclass calls `object.__setattr__` once per field; filling the slots through their descriptors gives the
# same object for about half the cost (figures: benchmarks/README.md). Only while Item is exactly these slots and its
# `__init__` does nothing else; otherwise rows go through the constructor.
ITEM_COLUMNS = (  # the items table's columns, in the order Item declares them
    "id",
    "seller_id",
    "title",
    "description",
    "price_cents",
    "currency",
    "stock",
    "category",
    "status",
    "created_at",
    "updated_at",
)
_FILL_SLOTS = (
    tuple(f.name for f in dataclasses.fields(Item)) == ITEM_COLUMNS
    and all(f.init for f in dataclasses.fields(Item))
    and tuple(Item.__slots__) == ITEM_COLUMNS
    and not hasattr(Item, "__post_init__")
)
_new = object.__new__
(
    _set_id,
    _set_seller_id,
    _set_title,
    _set_description,
    _set_price_cents,
    _set_currency,
    _set_stock,
    _set_category,
    _set_status,
    _set_created_at,
    _set_updated_at,
) = (Item.__dict__[name].__set__ for name in ITEM_COLUMNS) if _FILL_SLOTS else (None,) * len(ITEM_COLUMNS)


def item_from_row(row: Mapping[str, Any]) -> Item:
    status = _ITEM_STATUSES.get(row["status"]) or ItemStatus(row["status"])
    if not _FILL_SLOTS:
        return Item(
            id=str(row["id"]),
            seller_id=str(row["seller_id"]),
            title=row["title"],
            description=row["description"],
            price_cents=row["price_cents"],
            currency=row["currency"],
            stock=row["stock"],
            category=row["category"],
            status=status,
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )
    item = _new(Item)
    _set_id(item, str(row["id"]))
    _set_seller_id(item, str(row["seller_id"]))
    _set_title(item, row["title"])
    _set_description(item, row["description"])
    _set_price_cents(item, row["price_cents"])
    _set_currency(item, row["currency"])
    _set_stock(item, row["stock"])
    _set_category(item, row["category"])
    _set_status(item, status)
    _set_created_at(item, row["created_at"])
    _set_updated_at(item, row["updated_at"])
    return item
