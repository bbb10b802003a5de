"""The admin tools' use cases: the people list, changing an account's role or status, and the audit trail
that every admin write appends to in the same transaction as the change."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from market.domain.admin import (
    AuditAction,
    AuditEntry,
    AuditFilter,
    AuditTarget,
    AuditValue,
    UserFilter,
    audit_details,
    check_account_change,
)
from market.domain.errors import NotFound
from market.domain.users import Role, User, UserStatus

from .ports import (
    AdminUnitOfWork,
    AdminUnitOfWorkFactory,
    AuditLog,
    Clock,
    DeliveryDesk,
    IdGenerator,
    Page,
    UserDirectory,
)


@dataclass(frozen=True, slots=True)
class AdminPorts:
    """What the admin use cases need; bootstrap binds them to each admin use case (`bind_use_cases`), and the
    controllers receive those use cases, never these ports."""

    uow: AdminUnitOfWorkFactory
    directory: UserDirectory
    """For reads outside a transaction."""
    audit: AuditLog
    """For reads outside a transaction."""
    deliveries: DeliveryDesk
    """For reads outside a transaction."""
    clock: Clock
    ids: IdGenerator


async def append_audit(
    work: AdminUnitOfWork,
    ports: AdminPorts,
    actor: User,
    action: AuditAction,
    target_type: AuditTarget,
    target_id: str,
    details: Mapping[str, AuditValue],
) -> AuditEntry:
    """Append one entry to the trail inside `work` (it commits or rolls back with the change)."""
    entry = AuditEntry(
        id=ports.ids.new_id(),
        at=ports.clock.now(),
        actor_id=actor.id,
        action=action,
        target_type=target_type,
        target_id=target_id,
        details=audit_details(details),
    )
    await work.audit.append(entry)
    return entry


async def record_admin_action(
    actor: User,
    action: AuditAction,
    target_type: AuditTarget,
    target_id: str,
    details: Mapping[str, AuditValue],
    *,
    ports: AdminPorts,
) -> AuditEntry:
    """An admin write that changes nothing in the database (the monitoring self-test): its entry alone."""
    async with ports.uow() as work:
        entry = await append_audit(work, ports, actor, action, target_type, target_id, details)
        await work.commit()
    return entry


async def find_users(
    user_filter: UserFilter, limit: int, cursor: str | None, *, ports: AdminPorts
) -> Page[User]:
    return await ports.directory.find(user_filter, limit, cursor)


async def change_account(
    actor: User, user_id: str, *, role: Role | None, status: UserStatus | None, ports: AdminPorts
) -> User:
    """An admin sets a user's role and/or status. Disabling ends the user's tokens at once (they are revoked
    too, so enabling later does not bring them back); a new role applies to the next request (tokens carry no
    role). An admin may not disable or demote themselves, and the last active admin stays (409).
    Raises NotFound, SelfLockout, LastActiveAdmin."""
    async with ports.uow() as work:
        # The active admins' rows first, then the target's (one order for every account change, so two cannot
        # deadlock): the target is read as it is once the changes racing this one have committed, so a change
        # already made is not made (and audited) again, and the count is what the change would leave.
        active_admins = await work.directory.count_active_admins()
        target = await work.users.get(user_id, for_update=True)
        if target is None:
            raise NotFound("No such user.")
        new_role = role if role is not None and role is not target.role else None
        new_status = status if status is not None and status is not target.status else None
        if new_role is None and new_status is None:
            return target  # nothing changes: nothing to audit
        check_account_change(actor, target, new_role, new_status, active_admins)
        details: dict[str, AuditValue] = {}
        if new_role is not None:
            await work.directory.set_role(target.id, new_role)
            details |= {"role_from": target.role.value, "role_to": new_role.value}
        if new_status is not None:
            await work.users.set_status(target.id, new_status)
            details |= {"status_from": target.status.value, "status_to": new_status.value}
        if new_status is UserStatus.DISABLED:
            await work.users.revoke_tokens(target.id)
        await append_audit(work, ports, actor, AuditAction.USER_UPDATED, AuditTarget.USER, target.id, details)
        changed = await work.users.get(target.id)
        await work.commit()
    assert changed is not None
    return changed


async def find_audit(
    audit_filter: AuditFilter, limit: int, cursor: str | None, *, ports: AdminPorts
) -> Page[AuditEntry]:
    return await ports.audit.find(audit_filter, limit, cursor)


# --- Bound: what controllers receive (ports bound in bootstrap.bind_use_cases) ---------------------------------

RecordAdminAction = Callable[
    [User, AuditAction, AuditTarget, str, Mapping[str, AuditValue]], Awaitable[AuditEntry]
]
"""(actor, action, target type, target id, details)"""
FindUsers = Callable[[UserFilter, int, str | None], Awaitable[Page[User]]]
"""(filter, limit, cursor)"""
ChangeAccount = Callable[..., Awaitable[User]]
"""(actor, user id, *, role, status)"""
FindAudit = Callable[[AuditFilter, int, str | None], Awaitable[Page[AuditEntry]]]
"""(filter, limit, cursor)"""
