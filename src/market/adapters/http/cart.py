"""The buyer's cart."""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Controller, delete, get, put
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from market.application.cart import SetCartQuantity, ViewCart
from market.domain.orders import MAX_LINE_QUANTITY, Cart
from market.domain.users import Role, User

from .auth import requires
from .openapi import problems


class CartLineOut(msgspec.Struct, omit_defaults=True):
    item_id: str
    title: str
    quantity: int
    unit_price_cents: int
    line_total_cents: int
    available: bool = True
    """Present, and false, only when the item left the catalog after it was added (archived, or its seller's
    account disabled): the line cannot be bought, is not in the cart's total, and must be removed before
    checking out. Absent on every line that can be bought, so those keep the documented shape exactly."""


class CartOut(msgspec.Struct):
    lines: list[CartLineOut]
    total_cents: int | None
    """What the available lines cost (0 when none is). Null only when those no longer share one currency (a
    seller changed an item's currency)."""
    currency: str | None

    @classmethod
    def of(cls, cart: Cart) -> CartOut:
        total = cart.total
        return cls(
            lines=[
                CartLineOut(
                    line.item_id,
                    line.title,
                    line.quantity,
                    line.unit_price.cents,
                    line.line_total.cents,
                    line.available,
                )
                for line in cart.lines
            ],
            total_cents=total.cents if total else (None if any(line.available for line in cart.lines) else 0),
            currency=total.currency if total else None,
        )


class QuantityBody(msgspec.Struct, forbid_unknown_fields=True):
    quantity: Annotated[int, msgspec.Meta(ge=0, le=MAX_LINE_QUANTITY, description="0 removes the line.")]


class CartController(Controller):
    path = "/cart"
    tags = ["cart"]
    guards = [requires(Role.BUYER)]

    @get(operation_id="getCart", responses=problems(401, 403))
    async def get_cart(self, user: NamedDependency[User], view_cart: NamedDependency[ViewCart]) -> CartOut:
        """The buyer's cart at current prices."""
        return CartOut.of(await view_cart(user))

    @put(
        "/items/{item_id:str}",
        operation_id="setCartQuantity",
        responses=problems(400, 401, 403, 404, 409, 422),
    )
    async def set_quantity(
        self,
        item_id: FromPath[str],
        data: JSONBody[QuantityBody],
        user: NamedDependency[User],
        set_cart_quantity: NamedDependency[SetCartQuantity],
    ) -> CartOut:
        """Set how many of an item the cart holds (0 removes it). More than the stock is a 409; a new line in a
        cart that holds MAX_CART_LINES (200) distinct items already is a 422 naming `cart`."""
        return CartOut.of(await set_cart_quantity(user, item_id, data.quantity))

    @delete(
        "/items/{item_id:str}",
        operation_id="removeCartLine",
        status_code=200,
        responses=problems(401, 403, 404),
    )
    async def remove(
        self,
        item_id: FromPath[str],
        user: NamedDependency[User],
        set_cart_quantity: NamedDependency[SetCartQuantity],
    ) -> CartOut:
        """Remove the item's line from the cart."""
        return CartOut.of(await set_cart_quantity(user, item_id, 0))
