"""Cart use cases."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from market.domain.errors import NotFound
from market.domain.events import CartChanged
from market.domain.orders import Cart, CartLine, check_cart_quantity
from market.domain.users import User

from .ports import Clock, UnitOfWorkFactory


async def view_cart(buyer: User, *, uow: UnitOfWorkFactory) -> Cart:
    async with uow() as work:
        return await work.carts.get(buyer.id)


async def set_cart_quantity(
    buyer: User, item_id: str, quantity: int, *, uow: UnitOfWorkFactory, clock: Clock
) -> Cart:
    """Put `quantity` of the item in the cart; 0 removes the line. Checked against stock and the cart's
    currency. An item no longer on sale (archived, its seller disabled) can still be removed, not added."""
    async with uow() as work:
        item = await (work.items.get_on_sale(item_id) if quantity > 0 else work.items.get(item_id))
        if item is None:
            raise NotFound("There is no such item.")
        # Changes of one cart one at a time: two at once each checked the cart without the other's line, and
        # together put items in two currencies into it.
        await work.carts.hold(buyer.id, clock.now())
        cart = await work.carts.get(buyer.id)
        current = cart.quantity_of(item.id)
        check_cart_quantity(
            cart,
            item_id=item.id,
            title=item.title,
            currency=item.price.currency,
            stock=item.stock,
            quantity=quantity,
        )
        if quantity != current:
            now = clock.now()
            await work.carts.set_quantity(buyer.id, item.id, quantity, now)
            # What the cart now holds, without reading it back: the other lines were read in this
            # transaction, and the new one is the item as read here.
            cart = cart.with_line(
                CartLine(item.id, item.title, quantity, item.price, item.seller_id, item.stock)
            )
            changed = CartChanged(item.id, "add" if quantity > current else "remove", quantity - current)
            await work.collect([changed], now)
        await work.commit()
    return cart


# --- Bound: what controllers receive (ports bound in bootstrap.bind_use_cases) ---------------------------------

ViewCart = Callable[[User], Awaitable[Cart]]
SetCartQuantity = Callable[[User, str, int], Awaitable[Cart]]
"""(buyer, item id, quantity)"""
