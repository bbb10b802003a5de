"""Admin tools: every order, found by status, buyer, seller and time."""

from __future__ import annotations

from litestar import Controller, get
from litestar.params import Parameter

from market.application.checkout import ListOrders
from market.domain.users import Role, User

from .auth import requires
from .openapi import BEARER, problems
from .orders import SELLER_FILTER_HELP, FromBound, OrderOut, OrderPage, OrderStatusName, ToBound
from .query import UUID_FORMAT, order_filter_of, strict_request


class AdminOrdersController(Controller):
    path = "/admin/orders"
    tags = ["admin"]
    guards = [requires(Role.ADMIN)]
    security = BEARER
    before_request = strict_request

    @get(operation_id="adminListOrders", responses=problems(400, 401, 403))
    async def list_orders(
        self,
        user: User,
        list_orders: ListOrders,
        status: OrderStatusName | None = Parameter(default=None),
        buyer_id: str | None = Parameter(default=None, max_length=64, schema_extra=UUID_FORMAT),
        seller_id: str | None = Parameter(
            default=None, max_length=64, description=SELLER_FILTER_HELP, schema_extra=UUID_FORMAT
        ),
        from_: FromBound = None,
        to: ToBound = None,
        limit: int = Parameter(default=20, ge=1, le=100),
        cursor: str | None = Parameter(default=None, description="`next_cursor` of the previous page."),
    ) -> OrderPage:
        """Every order, newest first, filtered by `status`, `buyer_id`, `seller_id` and `created_at` (`from`
        included, `to` excluded). An unknown filter or a bad value is a 400 problem naming it."""
        page = await list_orders(
            user, limit, cursor or None, order_filter=order_filter_of(status, buyer_id, seller_id, from_, to)
        )
        return OrderPage(items=[OrderOut.of(o) for o in page.items], next_cursor=page.next_cursor)
