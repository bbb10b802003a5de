"""Seller webhook deliveries for operators: every delivery found by seller and status, and a failed or
pending one attempted again now (by an admin, audited, or by the seller it belongs to)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from market.domain.admin import AuditAction, AuditTarget, DeliveryNotRetryable
from market.domain.errors import NotFound
from market.domain.users import Role, User
from market.domain.webhooks import DeliveryRecord, DeliveryStatus

from .admin import AdminPorts, append_audit
from .ports import Page

_NO_SUCH_DELIVERY = "There is no such delivery."


async def find_deliveries(
    seller_id: str | None, status: DeliveryStatus | None, limit: int, cursor: str | None, *, ports: AdminPorts
) -> Page[DeliveryRecord]:
    return await ports.deliveries.find(seller_id, status, limit, cursor)


async def retry_delivery(user: User, delivery_id: str, *, ports: AdminPorts) -> DeliveryRecord:
    """Make a pending or failed delivery due now; the delivery worker attempts it on its next pass with the
    same `webhook-id`. An admin may retry any delivery (audited in the same transaction); a seller only their
    own (another's is a 404). Raises NotFound or DeliveryNotRetryable (delivered or disabled)."""
    async with ports.uow() as work:
        record = await work.deliveries.get(delivery_id)
        if record is None or (user.role is not Role.ADMIN and record.seller_id != user.id):
            raise NotFound(_NO_SUCH_DELIVERY)
        if not await work.deliveries.retry_now(record.id, ports.clock.now()):
            raise DeliveryNotRetryable(record.status.value)
        if user.role is Role.ADMIN:
            await append_audit(
                work,
                ports,
                user,
                AuditAction.WEBHOOK_RETRIED,
                AuditTarget.WEBHOOK_DELIVERY,
                record.id,
                {"seller_id": record.seller_id, "status_from": record.status.value},
            )
        retried = await work.deliveries.get(record.id)
        await work.commit()
    assert retried is not None
    return retried


# --- Bound: what controllers receive (ports bound in bootstrap.bind_use_cases) ---------------------------------

FindDeliveries = Callable[
    [str | None, DeliveryStatus | None, int, str | None], Awaitable[Page[DeliveryRecord]]
]
"""(seller id, status, limit, cursor)"""
RetryDelivery = Callable[[User, str], Awaitable[DeliveryRecord]]
"""(user, delivery id)"""
