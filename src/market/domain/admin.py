"""The marketplace's own administration: who may change whose account, and the audit trail of every admin
write."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from .errors import DomainError
from .redaction import names_a_secret
from .users import Role, User, UserStatus

AuditValue = str | int | bool | None
"""What an audit entry's details may hold: plain values, never objects."""


MAX_QUERY = 100
"""Longest free-text filter of the people list (`q`)."""


class AuditAction(StrEnum):
    """Every kind of admin write. Its value is what `GET /admin/audit?action=` filters on."""

    USER_UPDATED = "user.updated"
    ITEM_MODERATED = "item.moderated"
    ITEM_UPDATED = "item.updated"
    WEBHOOK_RETRIED = "webhook.retried"
    MONITORING_TESTED = "monitoring.tested"
    ORDER_REFUNDED = "order.refunded"


class AuditTarget(StrEnum):
    USER = "user"
    ITEM = "item"
    WEBHOOK_DELIVERY = "webhook_delivery"
    MONITORING = "monitoring"
    ORDER = "order"


MAX_REASON = 500
"""Longest moderation reason."""


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One admin write: who did what to which object, when, and in which trace. `details` hold what changed
    (never a secret: see `audit_details`)."""

    id: str
    at: datetime
    actor_id: str
    action: AuditAction
    target_type: AuditTarget
    target_id: str
    details: Mapping[str, AuditValue] = field(default_factory=dict)
    trace_id: str | None = None


def audit_details(details: Mapping[str, AuditValue]) -> dict[str, AuditValue]:
    """`details` without any entry whose key names a secret (a password, a token, a card...), whatever the
    caller put in: the audit trail is read by every admin and kept for good."""
    return {
        key: value
        for key, value in details.items()
        if not names_a_secret(key) and (value is None or isinstance(value, str | int | bool))
    }


@dataclass(frozen=True, slots=True)
class AuditFilter:
    actor_id: str | None = None
    action: AuditAction | None = None
    target_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True, slots=True)
class UserFilter:
    """`query` matches e-mail or display name (case-insensitive substring)."""

    query: str | None = None
    role: Role | None = None
    status: UserStatus | None = None


class SelfLockout(DomainError):
    """An admin tried to disable or demote their own account."""

    def __init__(self) -> None:
        super().__init__("You cannot disable or demote your own account; ask another admin.")


class DeliveryNotRetryable(DomainError):
    """Only a pending or failed delivery is attempted again."""

    def __init__(self, status: str) -> None:
        super().__init__(f"This delivery is {status}; only pending or failed deliveries can be retried.")


class LastActiveAdmin(DomainError):
    """The change would leave the marketplace without an active admin."""

    def __init__(self) -> None:
        super().__init__("This is the last active admin; make another admin first.")


def removes_an_admin(target: User, role: Role | None, status: UserStatus | None) -> bool:
    """Whether setting `role`/`status` (None: unchanged) takes an active admin away."""
    if target.role is not Role.ADMIN or target.status is not UserStatus.ACTIVE:
        return False
    return (role is not None and role is not Role.ADMIN) or status is UserStatus.DISABLED


def check_account_change(
    actor: User, target: User, role: Role | None, status: UserStatus | None, active_admins: int
) -> None:
    """Raise SelfLockout or LastActiveAdmin when the change must not happen. `active_admins`: how many
    active admins there are now (counted under a lock, so two admins cannot remove each other at once)."""
    if not removes_an_admin(target, role, status):
        return
    if actor.id == target.id:
        raise SelfLockout()
    if active_admins <= 1:
        raise LastActiveAdmin()
