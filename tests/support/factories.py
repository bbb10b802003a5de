"""Domain objects with sensible defaults, for unit tests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from market.domain.catalog import Item, ItemStatus
from market.domain.money import Money
from market.domain.orders import Order, OrderLine, OrderStatus, Payment, PaymentStatus
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
    """An item; `price_cents` and `currency` may be given apart (they make its `price`)."""
    price = Money(overrides.pop("price_cents", 1999), overrides.pop("currency", "EUR"))
    values: dict[str, Any] = {
        "id": "item-1",
        "seller_id": "seller-1",
        "title": "Blue mug",
        "description": "A blue ceramic mug.",
        "price": price,
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


TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def new_order(buyer, items_and_quantities, *, created_at=T0, status=OrderStatus.PENDING_PAYMENT) -> Order:
    """An order of `buyer` for [(item, quantity)], with a fresh id and a pending card payment."""
    order_id = str(uuid.uuid4())
    lines = tuple(
        OrderLine(i.id, i.seller_id, i.title, quantity, i.price) for i, quantity in items_and_quantities
    )
    total = Money(sum(line.line_total.cents for line in lines), lines[0].unit_price.currency)
    return Order(
        id=order_id,
        buyer_id=buyer.id,
        status=status,
        lines=tuple(sorted(lines, key=lambda line: (line.title, line.item_id))),
        total=total,
        created_at=created_at,
        updated_at=created_at,
        payment=Payment(
            id=str(uuid.uuid4()),
            order_id=order_id,
            status=PaymentStatus.PENDING,
            method="card",
            amount=total,
            provider="sandbox",
        ),
        traceparent=TRACEPARENT,
    )
