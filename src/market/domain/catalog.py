"""Catalog items: what sellers list and buyers browse."""

from __future__ import annotations

import dataclasses
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from .errors import PermissionDenied
from .money import MAX_CENTS, Money, is_currency
from .users import Role, User
from .validation import FieldErrors

MAX_TITLE = 200
MAX_DESCRIPTION = 5000
MAX_CATEGORY = 64
MAX_STOCK = 1_000_000_000
MAX_QUERY_TERMS = 32  # longer queries are cut: relevance does not improve and cost grows per term
MAX_QUERY_LENGTH = 200
"""Characters of a normalised query, cut between words: no title is longer, and the query is also what the
analytics log, its rollups, the search report and the session timeline keep of every search."""

SELLER_WRITABLE = ("title", "description", "price_cents", "currency", "stock", "category")
"""The fields a seller sends (as the API names them); `price_cents` and `currency` make the item's `price`."""


class ItemStatus(StrEnum):
    ACTIVE = "active"
    ARCHIVED = "archived"
    SUSPENDED = "suspended"
    """Taken down by the marketplace: hidden like an archived item, and only an admin brings it back."""


@dataclass(frozen=True, slots=True)
class Item:
    id: str
    seller_id: str
    title: str
    description: str
    price: Money
    stock: int
    category: str
    status: ItemStatus
    created_at: datetime
    updated_at: datetime

    def editable_by(self, user: User) -> bool:
        """Sellers edit their own items; admins edit any."""
        return user.role is Role.ADMIN or (user.role is Role.SELLER and user.id == self.seller_id)

    def ensure_editable_by(self, user: User) -> None:
        """Items are public, so another's item is a 403, not a 404 (a hidden one is a 404: `hidden_from`)."""
        if not self.editable_by(user):
            raise PermissionDenied("Only the seller who listed this item can change it.")

    def hidden_from(self, user: User) -> bool:
        """An archived or suspended item is not public: to anyone who may not edit it, it does not exist (a
        404, never a 403 that would reveal it)."""
        return self.status is not ItemStatus.ACTIVE and not self.editable_by(user)

    def with_changes(self, changes: dict[str, Any], now: datetime) -> Item:
        """A copy with seller-writable fields changed; anything else in `changes` is ignored by design."""
        allowed = {k: v for k, v in changes.items() if k in SELLER_WRITABLE}
        validate_item_fields(allowed)
        if "title" in allowed:
            allowed["title"] = allowed["title"].strip()
        if "category" in allowed:
            allowed["category"] = allowed["category"].strip()
        if "price_cents" in allowed or "currency" in allowed:
            allowed["price"] = Money(
                allowed.pop("price_cents", self.price.cents), allowed.pop("currency", self.price.currency)
            )
        return dataclasses.replace(self, **allowed, updated_at=now)

    def with_status(self, user: User, status: ItemStatus, now: datetime) -> Item:
        """A copy in `status`, if `user` may put it there: an admin may set any status (moderation); the
        owning seller may archive their item and restore it from archived, but never suspend one nor bring a
        suspended one back. Raises PermissionDenied (items are public: a 403, not a 404)."""
        if user.role is not Role.ADMIN:
            self.ensure_editable_by(user)
            if self.status is ItemStatus.SUSPENDED:
                raise PermissionDenied("The marketplace suspended this item; only an admin can restore it.")
            if status is ItemStatus.SUSPENDED:
                raise PermissionDenied("Only the marketplace suspends items.")
        return dataclasses.replace(self, status=status, updated_at=now)

    def archived(self, now: datetime) -> Item:
        return dataclasses.replace(self, status=ItemStatus.ARCHIVED, updated_at=now)


def validate_item_fields(fields: dict[str, Any]) -> None:
    """Check the seller-writable fields present in `fields`; raise `ValidationFailed` naming each bad one."""
    errors = FieldErrors()
    if "title" in fields:
        errors.check_text("title", fields["title"], min_len=1, max_len=MAX_TITLE)
    if "description" in fields:
        errors.check_text("description", fields["description"], min_len=0, max_len=MAX_DESCRIPTION)
    if "price_cents" in fields:
        errors.check_count("price_cents", fields["price_cents"], minimum=0, maximum=MAX_CENTS)
    if "currency" in fields and not is_currency(fields["currency"]):
        errors.add("currency", "must be an ISO 4217 currency code such as EUR")
    if "stock" in fields:
        errors.check_count("stock", fields["stock"], minimum=0, maximum=MAX_STOCK)
    if "category" in fields:
        errors.check_text("category", fields["category"], min_len=1, max_len=MAX_CATEGORY)
    errors.raise_if_any()


def new_item(*, item_id: str, seller: User, fields: dict[str, Any], now: datetime) -> Item:
    """A freshly listed, active item. Only sellers list items (admins moderate, they do not sell)."""
    if seller.role is not Role.SELLER:
        raise PermissionDenied("Only sellers can list items.")
    values = {"description": "", **{k: v for k, v in fields.items() if v is not None}}
    validate_item_fields({k: values.get(k) for k in SELLER_WRITABLE})
    return Item(
        id=item_id,
        seller_id=seller.id,
        title=values["title"].strip(),
        description=values["description"],
        price=Money(values["price_cents"], values["currency"]),
        stock=values["stock"],
        category=values["category"].strip(),
        status=ItemStatus.ACTIVE,
        created_at=now,
        updated_at=now,
    )


@dataclass(frozen=True, slots=True)
class ItemFilter:
    """What a buyer asked to browse. `query` is already normalised; None means browse, not search. `status`:
    buyers browse active items only; the moderation page lists archived or suspended ones too."""

    query: str | None = None
    category: str | None = None
    min_price_cents: int | None = None
    max_price_cents: int | None = None
    seller_id: str | None = None
    status: ItemStatus = ItemStatus.ACTIVE


# Control characters separate words like spaces do (PostgreSQL text cannot even hold NUL).
_CONTROLS_TO_SPACES = {code: " " for code in (*range(0x20), *range(0x7F, 0xA0))}
DOTTED_I = "i\u0307"
"""How Python lowers the Turkish dotted capital İ (U+0130): i and a combining dot above (U+0307)."""


def normalise_query(raw: str | None) -> str | None:
    """Lower-case words (Unicode NFC: "é" typed as one code point or as "e" and an accent is one query)
    separated by single spaces, at most MAX_QUERY_TERMS of them and MAX_QUERY_LENGTH characters; None when
    empty.
    This is the form that is searched, counted and reported."""
    if raw is None:
        return None
    # Python lowers the dotted capital İ to i and a combining dot above (U+0307), which neither engine finds:
    # PostgreSQL's text search lowers a stored İ to a plain i, and the SQLite search's words (`\w+`) split at
    # the dot. So 'İstanbul' found no 'İSTANBUL' on either engine; the dot goes.
    lowered = raw.translate(_CONTROLS_TO_SPACES).lower().replace(DOTTED_I, "i")
    text = unicodedata.normalize("NFC", lowered)
    query = " ".join(text.split()[:MAX_QUERY_TERMS])
    if len(query) > MAX_QUERY_LENGTH:
        cut = query[:MAX_QUERY_LENGTH]
        # A word cut in two would be searched as another word: it goes, unless it is the only one.
        query = cut[: cut.rindex(" ")] if query[MAX_QUERY_LENGTH] != " " and " " in cut else cut.rstrip()
    return query or None
