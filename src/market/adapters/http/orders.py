"""Checkout and orders."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.params import Parameter
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from market.application import checkout as checkout_use_cases
from market.application.ports import IdempotentReplay
from market.application.services import Services
from market.domain import errors
from market.domain.orders import CheckoutInProgress, Order, PaymentGatewayUnavailable
from market.domain.users import Role, User
from market.telemetry import names

from .auth import requires
from .limits import rate_limited
from .openapi import problems
from .problems import PROBLEM_JSON, domain_error_handler
from .query import UUID_FORMAT, order_filter_of, strict_request
from .redacted import RedactedStruct

MAX_IDEMPOTENCY_KEY = 255
_TRACER = trace.get_tracer(names.INSTRUMENTATION_SCOPE)


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


OrderStatusName = Literal["pending_payment", "processing", "paid", "payment_failed", "refunded"]
_BOUND_HELP = "RFC 3339 timestamp with a time zone, or a date (its first instant in UTC), on `created_at`."
FromBound = Annotated[
    str | None, Parameter(query="from", max_length=64, description=_BOUND_HELP + " Included.")
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
                    line.item_id, line.title, line.quantity, line.unit_price_cents, line.line_total_cents
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
        data: CheckoutBody,
        user: User,
        services: Services,
        # Documented as required; a missing key still reaches the handler (default None), which answers with
        # the specific `idempotency-key-required` problem rather than a generic invalid-parameter one.
        idempotency_key: str | None = Parameter(
            header="Idempotency-Key",
            default=None,
            required=True,
            min_length=1,
            max_length=MAX_IDEMPOTENCY_KEY,
            description="Required. A retry with the same key and body replays the first response.",
        ),
    ) -> Response[Any]:
        """Place an order from the cart and pay for it: 201 `paid` (or `processing`), 402 declined (order
        kept as payment_failed, stock released), 503 provider unavailable (order kept as pending_payment)."""
        if not idempotency_key:
            raise errors.IdempotencyKeyRequired()
        request_hash = hashlib.sha256(msgspec.json.encode(data)).hexdigest()
        claim = await services.idempotency.begin(user.id, idempotency_key, request_hash, services.clock.now())
        if isinstance(claim, IdempotentReplay):
            return _raw_response(claim.status, claim.body, replayed=True)
        if claim == "mismatch":
            raise errors.IdempotencyKeyReused()
        if claim == "in_progress":
            raise errors.IdempotentRequestInProgress()
        try:
            order = await _place_order(user, data, services)
            status, body = 201, msgspec.json.encode(OrderOut.of(order))
        except CheckoutInProgress:  # transient, and about another request: not this key's outcome
            await services.idempotency.abandon(user.id, idempotency_key)
            raise
        except errors.DomainError as exc:  # an outcome of this key, replayed like a success
            problem = domain_error_handler(request, exc)
            status, body = problem.status_code, msgspec.json.encode(problem.content)
        except BaseException:
            await services.idempotency.abandon(user.id, idempotency_key)
            raise
        await services.idempotency.complete(user.id, idempotency_key, status, body, services.clock.now())
        return _raw_response(status, body, replayed=False)

    @get(
        "/orders",
        operation_id="listOrders",
        guards=[requires()],
        before_request=strict_request,
        responses=problems(400, 401),
    )
    async def list_orders(
        self,
        user: User,
        services: Services,
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
        page = await checkout_use_cases.list_orders(
            user,
            limit,
            cursor or None,
            uow=services.uow,
            order_filter=order_filter_of(status, buyer_id, seller_id, from_, to),
        )
        return OrderPage(items=[OrderOut.of(o) for o in page.items], next_cursor=page.next_cursor)

    @get("/orders/{order_id:str}", operation_id="getOrder", guards=[requires()], responses=problems(401, 404))
    async def get_order(self, order_id: str, user: User, services: Services) -> OrderOut:
        """One order the caller may see; any other is a 404.

        The buyer and admins see the whole order. A seller sees only their own lines, and `total_cents` and
        `payment.amount_cents` are their subtotal of it (the payment keeps its id, status and method): other
        sellers' items, quantities and prices in the same basket are not theirs to see."""
        return OrderOut.of(await checkout_use_cases.get_order(order_id, user, uow=services.uow))


async def _place_order(user: User, data: CheckoutBody, services: Services) -> Order:
    """The checkout use case inside its business span, `checkout.place_order`."""
    traceparent = _current_traceparent()  # the server span's: provider events link back to it
    # Expected outcomes (declined, out of stock) leave the span's status alone: only our failures are errors.
    with _TRACER.start_as_current_span(
        names.SPAN_CHECKOUT_PLACE_ORDER, record_exception=False, set_status_on_exception=False
    ) as span:
        try:
            order = await checkout_use_cases.checkout(
                user,
                checkout_use_cases.PaymentMethodInput(data.payment_method.type, data.payment_method.token),
                uow=services.uow,
                gateway=services.gateway,
                ids=services.ids,
                clock=services.clock,
                events=services.events,
                traceparent=traceparent,
            )
        except errors.DomainError as exc:
            order_id = getattr(exc, "order_id", None)
            if order_id:
                span.set_attribute(names.ORDER_ID, order_id)
            span.set_attribute(names.CHECKOUT_OUTCOME, type(exc).__name__)
            if isinstance(exc, PaymentGatewayUnavailable):
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, "payment provider unavailable"))
            raise
        except Exception as exc:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise
        span.set_attributes(
            {
                names.ORDER_ID: order.id,
                names.ORDER_TOTAL_CENTS: order.total.cents,
                names.ORDER_CURRENCY: order.total.currency,
                names.CART_LINE_COUNT: len(order.lines),
                names.CHECKOUT_OUTCOME: order.status.value,
            }
        )
        return order


def _raw_response(status: int, body: bytes, *, replayed: bool) -> Response[Any]:
    headers = {"Idempotent-Replayed": "true"} if replayed else {}
    media_type = PROBLEM_JSON if status >= 400 else "application/json"
    return Response(content=body, status_code=status, media_type=media_type, headers=headers)


def _current_traceparent() -> str | None:
    """The W3C reference of the request's server span: where this order was created."""
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"
