"""Checkout and orders."""

from __future__ import annotations

import hashlib
from datetime import datetime
from functools import partial
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, HeaderParameter, JSONBody, Parameter, QueryParameter

from market.application.checkout import GetOrder, IdempotentCheckout, ListOrders, PaymentMethodInput
from market.application.ports import IdempotentReplay
from market.domain import errors
from market.domain.orders import Order
from market.domain.users import Role, User

from .auth import requires
from .limits import rate_limited
from .openapi import problems
from .problems import PROBLEM_JSON, domain_error_handler
from .query import UUID_FORMAT, order_filter_of, strict_request
from .redacted import RedactedStruct

MAX_IDEMPOTENCY_KEY = 255


def idempotency_key_header(description: str) -> HeaderParameter:
    """The `Idempotency-Key` header of a handler that charges or refunds. Documented as required, yet declared
    with a default of None: a missing key, or an empty one (no key either), still reaches the handler, which
    answers with the specific `idempotency-key-required` problem rather than a generic invalid-parameter one."""
    return HeaderParameter(
        name="Idempotency-Key",
        required=True,
        schema_extra={"minLength": 1},  # documented, but not checked here: see above
        max_length=MAX_IDEMPOTENCY_KEY,
        description=description,
    )


class PaymentMethodBody(RedactedStruct, forbid_unknown_fields=True):
    secret_fields = frozenset({"token"})

    type: Literal["card"]
    token: Annotated[  # hidden from repr (secret_fields)
        str, msgspec.Meta(min_length=1, max_length=255, description="A card token, e.g. tok_visa.")
    ]


class CheckoutBody(msgspec.Struct, forbid_unknown_fields=True):
    payment_method: PaymentMethodBody


class OrderLineOut(msgspec.Struct):
    item_id: str
    title: str
    quantity: int
    unit_price_cents: int
    line_total_cents: int


class PaymentOut(msgspec.Struct):
    id: str
    status: str
    method: str
    amount_cents: int


OrderStatusName = Literal[
    "pending_payment", "processing", "paid", "payment_failed", "partially_refunded", "refunded"
]
_BOUND_HELP = "RFC 3339 timestamp with a time zone, or a date (its first instant in UTC), on `created_at`."
FromBound = Annotated[
    str | None, QueryParameter(name="from", max_length=64, description=_BOUND_HELP + " Included.")
]
ToBound = Annotated[str | None, Parameter(max_length=64, description=_BOUND_HELP + " Excluded.")]
SELLER_FILTER_HELP = "Orders holding at least one line of this seller."


class OrderOut(msgspec.Struct):
    id: str
    buyer_id: str
    status: OrderStatusName
    lines: list[OrderLineOut]
    total_cents: int
    currency: str
    payment: PaymentOut | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, order: Order) -> OrderOut:
        p = order.payment
        return cls(
            id=order.id,
            buyer_id=order.buyer_id,
            status=order.status.value,  # type: ignore[arg-type]
            lines=[
                OrderLineOut(
                    line.item_id, line.title, line.quantity, line.unit_price.cents, line.line_total.cents
                )
                for line in order.lines
            ],
            total_cents=order.total.cents,
            currency=order.total.currency,
            payment=PaymentOut(p.id, p.status.value, p.method, p.amount.cents) if p else None,
            created_at=order.created_at,
            updated_at=order.updated_at,
        )


class OrderPage(msgspec.Struct):
    items: list[OrderOut]
    next_cursor: str | None


class CheckoutController(Controller):
    tags = ["orders"]

    @post(
        "/checkout",
        operation_id="checkout",
        status_code=201,
        guards=[requires(Role.BUYER), rate_limited("checkout")],
        responses=problems(400, 401, 402, 403, 409, 422, 429, 503),
    )
    async def checkout(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[CheckoutBody],
        user: NamedDependency[User],
        idempotent_checkout: NamedDependency[IdempotentCheckout],
        idempotency_key: Annotated[
            str | None,
            idempotency_key_header(
                "Required. A retry with the same key and body replays the first response."
            ),
        ] = None,
    ) -> Response[Any]:
        """Place an order from the cart and pay for it: 201 `paid` (or `processing`), 402 declined (order
        kept as payment_failed, stock released), 503 provider unavailable (order kept as pending_payment). 409
        for an empty cart, a line no longer on sale (`item-unavailable`) or short of stock, naming the item."""
        answer = await idempotent_checkout(
            user,
            idempotency_key,
            hashlib.sha256(msgspec.json.encode(data)).hexdigest(),
            PaymentMethodInput(data.payment_method.type, data.payment_method.token),
            partial(_respond, request),
        )
        headers = {"Idempotent-Replayed": "true"} if answer.replayed else {}
        media_type = PROBLEM_JSON if answer.status >= 400 else "application/json"
        return Response(
            content=answer.body, status_code=answer.status, media_type=media_type, headers=headers
        )

    @get(
        "/orders",
        operation_id="listOrders",
        guards=[requires()],
        before_request=strict_request,
        responses=problems(400, 401),
    )
    async def list_orders(
        self,
        user: NamedDependency[User],
        list_orders: NamedDependency[ListOrders],
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
        """Buyers see their orders, sellers the orders with their items, admins all. Newest first, narrowed by
        the filters (within what the caller may see). An unknown filter or a bad value is a 400 naming it.

        A seller sees each order as on `GET /orders/{order_id}`: only their own lines, with `total_cents` and
        `payment.amount_cents` being their subtotal."""
        page = await list_orders(
            user, limit, cursor or None, order_filter=order_filter_of(status, buyer_id, seller_id, from_, to)
        )
        return OrderPage(items=[OrderOut.of(o) for o in page.items], next_cursor=page.next_cursor)

    @get("/orders/{order_id:str}", operation_id="getOrder", guards=[requires()], responses=problems(401, 404))
    async def get_order(
        self, order_id: FromPath[str], user: NamedDependency[User], get_order: NamedDependency[GetOrder]
    ) -> OrderOut:
        """One order the caller may see; any other is a 404.

        The buyer and admins see the whole order. A seller sees only their own lines, and `total_cents` and
        `payment.amount_cents` are their subtotal of it (the payment keeps its id, status and method): other
        sellers' items, quantities and prices in the same basket are not theirs to see."""
        return OrderOut.of(await get_order(order_id, user))


def _respond(request: Request[Any, Any, Any], outcome: Order | errors.DomainError) -> IdempotentReplay:
    """The response a checkout's outcome gets (and its retries with the same key): the order, or its problem."""
    if isinstance(outcome, Order):
        return IdempotentReplay(201, msgspec.json.encode(OrderOut.of(outcome)))
    problem = domain_error_handler(request, outcome)
    return IdempotentReplay(problem.status_code, msgspec.json.encode(problem.content))
