"""Item moderation: admins set any item's status (active, archived, suspended) with a reason, audited; a seller
archives and restores their own items but cannot touch a suspended one."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from market.domain.admin import AuditAction, AuditTarget
from market.domain.catalog import Item, ItemFilter, ItemStatus
from market.domain.errors import NotFound
from market.domain.users import Role, User

from .admin import AdminPorts, append_audit
from .catalog import change_item
from .ports import Page, ReadRepositories, UnitOfWorkFactory

_NO_SUCH_ITEM = "There is no such item."


async def set_item_status(
    user: User, item_id: str, status: ItemStatus, reason: str | None, *, ports: AdminPorts
) -> Item:
    """Put the item in `status`. An admin's change appends an audit entry (with the reason) in the same
    transaction. Raises NotFound or PermissionDenied (a seller and a suspended item, or another's item)."""
    async with ports.uow() as work:
        item = await work.items.get(item_id)
        if item is None:
            raise NotFound(_NO_SUCH_ITEM)
        changed = item.with_status(user, status, ports.clock.now())
        if changed.status is item.status and user.role is not Role.ADMIN:
            return item  # a seller repeating themselves: nothing changes
        await work.items.update(changed)
        if user.role is Role.ADMIN:
            suspended_at = changed.updated_at if status is ItemStatus.SUSPENDED else None
            await work.moderation.record(item.id, suspended_at, reason)
            await append_audit(
                work,
                ports,
                user,
                AuditAction.ITEM_MODERATED,
                AuditTarget.ITEM,
                item.id,
                {"status_from": item.status.value, "status_to": status.value, "reason": reason},
            )
        await work.commit()
    return changed


async def edit_item(
    user: User,
    item_id: str,
    status: ItemStatus | None,
    fields: Mapping[str, Any],
    *,
    ports: AdminPorts,
    uow: UnitOfWorkFactory,
) -> Item:
    """`PATCH /items/{id}`: the status first (a seller restores their archived item, or archives it; an admin's
    change is audited, with no reason), then the other fields. Nothing sent: the item as it is, if the caller
    may change it. Raises NotFound or PermissionDenied."""
    item = None
    if status is not None:
        item = await set_item_status(user, item_id, status, None, ports=ports)
    if fields or item is None:
        item = await change_item(user, item_id, dict(fields), uow=uow, clock=ports.clock)
    return item


async def find_items(
    item_filter: ItemFilter, limit: int, cursor: str | None, *, repos: ReadRepositories
) -> Page[Item]:
    """Items in the filter's status (archived and suspended ones too), for the moderation page: a read by an
    admin, so no search is counted in the analytics."""
    return await repos.items.browse(item_filter, limit, cursor)


# --- Bound: what controllers receive (ports bound in bootstrap.bind_use_cases) ---------------------------------

SetItemStatus = Callable[[User, str, ItemStatus, str | None], Awaitable[Item]]
"""(user, item id, status, reason)"""
EditItem = Callable[[User, str, ItemStatus | None, Mapping[str, Any]], Awaitable[Item]]
"""(user, item id, status or None, other fields)"""
FindItems = Callable[[ItemFilter, int, str | None], Awaitable[Page[Item]]]
"""(filter with a status, limit, cursor)"""
