"""Seller webhook deliveries for operators: every delivery by seller and status, and retrying one now (admins
any, sellers their own)."""

from __future__ import annotations

from typing import Literal

import msgspec
from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, Parameter

from market.application.deliveries import FindDeliveries, RetryDelivery
from market.domain.users import Role, User
from market.domain.webhooks import DeliveryRecord, DeliveryStatus

from .auth import requires
from .openapi import BEARER, problems
from .query import UUID_FORMAT, strict_request, uuid_or_400
from .seller import DeliveryOut

DeliveryStatusName = Literal["pending", "delivered", "failed", "disabled"]


class AdminDeliveryOut(DeliveryOut):
    """A delivery as on the seller's list, with the seller it belongs to."""

    seller_id: str

    @classmethod
    def of_record(cls, record: DeliveryRecord) -> AdminDeliveryOut:
        base = DeliveryOut.of(record)
        fields = {name: getattr(base, name) for name in DeliveryOut.__struct_fields__}
        return cls(**fields, seller_id=record.seller_id)


class AdminDeliveryPage(msgspec.Struct):
    items: list[AdminDeliveryOut]
    next_cursor: str | None


_RETRY_DOC = (
    "Attempt a pending or failed delivery again now: it becomes due at once and the delivery worker sends it on "
    "its next pass (within a second or two) with the same `webhook-id`. 202 with the delivery as queued; a "
    "delivered or disabled one is a 409."
)


class AdminWebhooksController(Controller):
    path = "/admin/webhooks/deliveries"
    tags = ["admin"]
    guards = [requires(Role.ADMIN)]
    security = BEARER
    before_request = strict_request

    @get(operation_id="adminListWebhookDeliveries", responses=problems(400, 401, 403))
    async def list_deliveries(
        self,
        find_deliveries: NamedDependency[FindDeliveries],
        seller_id: str | None = Parameter(default=None, max_length=64, schema_extra=UUID_FORMAT),
        status: DeliveryStatusName | None = Parameter(default=None),
        limit: int = Parameter(default=20, ge=1, le=100),
        cursor: str | None = Parameter(default=None, description="`next_cursor` of the previous page."),
    ) -> AdminDeliveryPage:
        """Every seller webhook delivery, newest first, with its attempts; filtered by seller and status."""
        page = await find_deliveries(
            uuid_or_400("seller_id", seller_id),
            DeliveryStatus(status) if status else None,
            limit,
            cursor or None,
        )
        return AdminDeliveryPage([AdminDeliveryOut.of_record(d) for d in page.items], page.next_cursor)

    @post(
        "/{delivery_id:str}/retry",
        operation_id="adminRetryWebhookDelivery",
        status_code=202,
        responses=problems(400, 401, 403, 404, 409),
        description=_RETRY_DOC + " Appends an audit entry in the same transaction.",
    )
    async def retry(
        self,
        delivery_id: FromPath[str],
        user: NamedDependency[User],
        retry_delivery: NamedDependency[RetryDelivery],
    ) -> AdminDeliveryOut:
        return AdminDeliveryOut.of_record(await retry_delivery(user, delivery_id))


class SellerDeliveryRetryController(Controller):
    path = "/seller/webhook/deliveries"
    tags = ["webhooks"]
    guards = [requires(Role.SELLER)]
    security = BEARER
    before_request = strict_request

    @post(
        "/{delivery_id:str}/retry",
        operation_id="retrySellerWebhookDelivery",
        status_code=202,
        responses=problems(400, 401, 403, 404, 409),
        description=_RETRY_DOC + " Another seller's delivery is a 404.",
    )
    async def retry(
        self,
        delivery_id: FromPath[str],
        user: NamedDependency[User],
        retry_delivery: NamedDependency[RetryDelivery],
    ) -> DeliveryOut:
        return DeliveryOut.of(await retry_delivery(user, delivery_id))
