"""Rows to domain objects, shared by the repositories and the search queries."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from market.domain.catalog import Item, ItemStatus
from market.domain.money import Money
from market.domain.users import Role, User, UserStatus

from .tables import ItemRow, columns


def on_sale(alias: str) -> str:
    """SQL that is true when the item `alias` is offered to buyers: active, and its seller not disabled. A
    disabled seller's items leave the catalog (browse, search, the item page, carts, checkout) without being
    changed, so enabling the seller again brings them back as they were. The status is a literal: the partial
    indexes on active items (items_active_*) are chosen only for `status = 'active'`."""
    return (
        f"{alias}.status = 'active' AND NOT EXISTS"
        f" (SELECT 1 FROM users u WHERE u.id = {alias}.seller_id AND u.status = 'disabled')"
    )


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

MODERATION_COLUMNS = ("suspended_at", "moderation_reason")
"""Columns only moderation writes (adapters/db/admin.py); `Item` has no field for them."""

ITEM_COLUMNS = columns(ItemRow, without=MODERATION_COLUMNS)
"""The items table's columns but moderation's, in the order `Item` declares its fields, its `price` stored as
`price_cents` and `currency` (a unit test keeps them equal)."""


class _ItemSlots:
    """The same slots as `Item`, in the same order, without the frozen dataclass's `__setattr__` guard: filled by
    plain assignments, then made an `Item` by assigning `__class__` (allowed between classes of one slot
    layout). Half the cost of writing each slot through its descriptor, a fifth of `Item.__init__`'s (which
    goes through `object.__setattr__` per field): 20 items on every page of every browse."""

    __slots__ = Item.__slots__


def item_from_row(row: Mapping[str, Any]) -> Item:
    """An `Item` read back from our own table, its fields filled directly (see `_ItemSlots`): the row was valid
    when written, and `Item` checks nothing in its constructor. Its status and price still go through
    `ItemStatus` and `Money` (an unknown status raises). Objects built from user input go through `new_item`
    and its checks. A unit test keeps this equal to the constructor's object, field for field.

    The row starts with ITEM_COLUMNS, in their order (every item query selects them so): an asyncpg record is
    read by position (one slice instead of eleven look-ups by name, a third of the cost of each item); a
    mapping (SQLite's rows) by name."""
    if isinstance(row, dict):
        values: Any = [row[column] for column in ITEM_COLUMNS]
    else:
        values = row[:_ITEM_WIDTH]
    id_, seller_id, title, description, cents, currency, stock, category, status, created, updated = values
    item: Any = _ItemSlots()
    item.id = str(id_)
    item.seller_id = str(seller_id)
    item.title = title
    item.description = description
    item.price = stored_money(cents, currency)
    item.stock = stock
    item.category = category
    item.status = _ITEM_STATUSES.get(status) or ItemStatus(status)
    item.created_at = created
    item.updated_at = updated
    item.__class__ = Item
    return item


_ITEM_WIDTH = len(ITEM_COLUMNS)


_MONEY: dict[tuple[int, str], Money] = {}
_MONEY_KEPT = 4096


def stored_money(cents: int, currency: str) -> Money:
    """`Money` read back from a row. A catalog has far fewer distinct prices than rows read (every page of
    every browse builds one per item, each checking its currency): `Money` is immutable, so one object serves
    every row with that price. Built, and so checked, the first time; the memo is bounded."""
    key = (cents, currency)
    money = _MONEY.get(key)
    if money is None:
        if len(_MONEY) >= _MONEY_KEPT:
            _MONEY.clear()
        money = _MONEY[key] = Money(cents, currency)
    return money


def item_values(item: Item) -> dict[str, Any]:
    """The stored value of each of `item`'s columns but the primary key, by column name."""
    return {
        "seller_id": uuid.UUID(item.seller_id),
        "title": item.title,
        "description": item.description,
        "price_cents": item.price.cents,
        "currency": item.price.currency,
        "stock": item.stock,
        "category": item.category,
        # A suspended item is stored archived (with `suspended_at`, which only moderation sets or clears).
        "status": ItemStatus.ARCHIVED.value if item.status is ItemStatus.SUSPENDED else item.status.value,
        "created_at": item.created_at,
        "updated_at": item.updated_at,
    }
