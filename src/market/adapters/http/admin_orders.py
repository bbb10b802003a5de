"""Admin tools: every order, found by status, buyer, seller and time; refunds started by the marketplace."""

from __future__ import annotations

import hashlib
from datetime import datetime
from functools import partial
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import JSONBody, Parameter, PathParameter

from market.application.checkout import ListOrders
from market.application.ports import IdempotentReplay
from market.application.refunds import IdempotentRefund
from market.domain import errors
from market.domain.money import MAX_CENTS
from market.domain.refunds import ADMIN_REASONS, Refund, RefundReason
from market.domain.users import Role, User

from .auth import requires
from .openapi import BEARER, problems
from .orders import (
    SELLER_FILTER_HELP,
    FromBound,
    OrderOut,
    OrderPage,
    OrderStatusName,
    ToBound,
    idempotency_key_header,
)
from .problems import PROBLEM_JSON, domain_error_handler
from .query import UUID_FORMAT, order_filter_of, strict_request

RefundReasonName = Literal[tuple(reason.value for reason in ADMIN_REASONS)]  # type: ignore[valid-type]
RefundStatusName = Literal["pending", "succeeded", "failed"]


class RefundBody(msgspec.Struct, forbid_unknown_fields=True):
    reason: Annotated[RefundReasonName, msgspec.Meta(description="Why the money goes back.")]
    amount_cents: (
        Annotated[
            int,
            msgspec.Meta(
                ge=1,
                le=MAX_CENTS,
                description="Minor units of the order's currency; omitted: all that is left to refund.",
            ),
        ]
        | None
    ) = None


class RefundOut(msgspec.Struct):
    id: str
    order_id: str
    amount_cents: int
    currency: str
    status: RefundStatusName
    reason: str
    created_at: datetime

    @classmethod
    def of(cls, refund: Refund) -> RefundOut:
        return cls(
            id=refund.id,
            order_id=refund.order_id,
            amount_cents=refund.amount.cents,
            currency=refund.amount.currency,
            status=refund.status.value,  # type: ignore[arg-type]
            reason=refund.reason.value,
            created_at=refund.created_at,
        )


class AdminOrdersController(Controller):
    path = "/admin/orders"
    tags = ["admin"]
    guards = [requires(Role.ADMIN)]
    security = BEARER
    before_request = strict_request

    @get(operation_id="adminListOrders", responses=problems(400, 401, 403))
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
        """Every order, newest first, filtered by `status`, `buyer_id`, `seller_id` and `created_at` (`from`
        included, `to` excluded). An unknown filter or a bad value is a 400 problem naming it."""
        page = await list_orders(
            user, limit, cursor or None, order_filter=order_filter_of(status, buyer_id, seller_id, from_, to)
        )
        return OrderPage(items=[OrderOut.of(o) for o in page.items], next_cursor=page.next_cursor)

    @post(
        "/{order_id:str}/refunds",
        operation_id="adminRefundOrder",
        status_code=201,
        responses=problems(400, 401, 403, 404, 409, 422, 503),
    )
    async def refund_order(
        self,
        request: Request[Any, Any, Any],
        order_id: Annotated[str, PathParameter(schema_extra=UUID_FORMAT)],
        data: JSONBody[RefundBody],
        user: NamedDependency[User],
        idempotent_refund: NamedDependency[IdempotentRefund],
        idempotency_key: Annotated[
            str | None,
            idempotency_key_header(
                "Required. A retry with the same key and body replays the first response; keys are scoped per"
                " admin."
            ),
        ] = None,
    ) -> Response[Any]:
        """Give money of a paid order back to its buyer, through the payment provider: `amount_cents` (omitted:
        all that is left) of the order's currency. 201 with the refund (`succeeded`, or `pending` while the
        provider finishes it); the order becomes `partially_refunded`, or `refunded` when nothing is left.
        409: the order is not paid, the amount is more than what is left, or the provider refused. 503: the
        provider did not answer; the refund stays pending and a retry with the same key asks again (never
        refunding twice). Concurrent refunds of one order never exceed its total."""
        answer = await idempotent_refund(
            user,
            order_id,
            idempotency_key,
            hashlib.sha256(msgspec.json.encode(data)).hexdigest(),
            data.amount_cents,
            RefundReason(data.reason),
            partial(_respond, request),
        )
        headers = {"Idempotent-Replayed": "true"} if answer.replayed else {}
        media_type = PROBLEM_JSON if answer.status >= 400 else "application/json"
        return Response(
            content=answer.body, status_code=answer.status, media_type=media_type, headers=headers
        )


def _respond(request: Request[Any, Any, Any], outcome: Refund | errors.DomainError) -> IdempotentReplay:
    """The response a refund's outcome gets (and its retries with the same key): the refund, or its problem."""
    if isinstance(outcome, Refund):
        return IdempotentReplay(201, msgspec.json.encode(RefundOut.of(outcome)))
    problem = domain_error_handler(request, outcome)
    return IdempotentReplay(problem.status_code, msgspec.json.encode(problem.content))
