"""Item moderation: admins set any item's status (active, archived, suspended) with a reason, audited; a seller
archives and restores their own items but cannot touch a suspended one. Every write an admin makes to an item
(status, fields, archiving) appends an audit entry in its transaction."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from market.domain.admin import AuditAction, AuditTarget, AuditValue
from market.domain.catalog import Item, ItemFilter, ItemStatus
from market.domain.errors import NotFound
from market.domain.users import Role, User

from .admin import AdminPorts, append_audit
from .ports import AdminUnitOfWork, Page, ReadRepositories

_NO_SUCH_ITEM = "There is no such item."


async def set_item_status(
    user: User, item_id: str, status: ItemStatus, reason: str | None, *, ports: AdminPorts
) -> Item:
    """Put the item in `status`. An admin's change appends an audit entry (with the reason) in the same
    transaction. Raises NotFound or PermissionDenied (a seller and a suspended item, or another's item)."""
    async with ports.uow() as work:
        changed = await _with_status(work, ports, user, await _found(work, item_id, user), status, reason)
        await work.commit()
    return changed


async def edit_item(
    user: User,
    item_id: str,
    status: ItemStatus | None,
    fields: Mapping[str, Any],
    *,
    ports: AdminPorts,
) -> Item:
    """`PATCH /items/{id}`: the status first (a seller restores their archived item, or archives it; an admin's
    change is audited, with no reason), then the other fields, in one transaction: a request refused half-way
    (fields sent for an item left archived, a change the domain rejects) changes nothing. Nothing sent: the
    item as it is, if the caller may change it. Raises NotFound or PermissionDenied."""
    async with ports.uow() as work:
        before = item = await _found(work, item_id, user)
        if status is not None:  # audited below, with the fields, when there are some: one write, one entry
            item = await _with_status(work, ports, user, item, status, None, audited=not fields)
        if fields or status is None:
            if item.status is not ItemStatus.ACTIVE:  # only an active item's fields are edited
                raise NotFound(_NO_SUCH_ITEM)
            item.ensure_editable_by(user)
        if fields:
            changed = item.with_changes(dict(fields), ports.clock.now())
            await work.items.update(changed)
            if user.role is Role.ADMIN:
                action, details = AuditAction.ITEM_UPDATED, _changes(item, changed)
                if status is not None:
                    action = AuditAction.ITEM_MODERATED
                    details = {**_status_change(before, status, None), **details}
                await append_audit(work, ports, user, action, AuditTarget.ITEM, item.id, details)
            item = changed
        await work.commit()
    return item


async def archive_item(user: User, item_id: str, *, ports: AdminPorts) -> None:
    """`DELETE /items/{id}`: archive (never delete: orders keep pointing at items). Archiving twice is a no-op,
    and so is archiving a suspended item (it stays suspended: only an admin brings it back). An admin's archive
    is audited as any status change of theirs. Raises NotFound or PermissionDenied."""
    async with ports.uow() as work:
        item = await _found(work, item_id, user)
        item.ensure_editable_by(user)
        if item.status is ItemStatus.ACTIVE:
            await _with_status(work, ports, user, item, ItemStatus.ARCHIVED, None)
            await work.commit()


def _changes(before: Item, after: Item) -> dict[str, AuditValue]:
    """`<field>_from` / `<field>_to` for each field the edit changed, as the API names them."""
    values = {
        name: (getattr(before, name), getattr(after, name))
        for name in ("title", "description", "stock", "category")
    }
    values["price_cents"] = (before.price.cents, after.price.cents)
    values["currency"] = (before.price.currency, after.price.currency)
    details: dict[str, AuditValue] = {}
    for name, (old, new) in values.items():
        if old != new:
            details[f"{name}_from"], details[f"{name}_to"] = old, new
    return details


async def _found(work: AdminUnitOfWork, item_id: str, user: User) -> Item:
    """The item, its row locked: every write here stores the whole item, its stock included, so a checkout
    reserving meanwhile would otherwise have its reservation overwritten (oversold). NotFound also for an
    item hidden from `user` (another seller's archived or suspended item): a 403 would reveal it."""
    item = await work.items.get(item_id, for_update=True)
    if item is None or item.hidden_from(user):
        raise NotFound(_NO_SUCH_ITEM)
    return item


def _status_change(item: Item, status: ItemStatus, reason: str | None) -> dict[str, AuditValue]:
    return {"status_from": item.status.value, "status_to": status.value, "reason": reason}


async def _with_status(
    work: AdminUnitOfWork,
    ports: AdminPorts,
    user: User,
    item: Item,
    status: ItemStatus,
    reason: str | None,
    *,
    audited: bool = True,
) -> Item:
    """The item in `status`, written in `work` (an admin's change audited, unless the caller audits it with
    more in one entry); the item as it was when a seller repeats themselves."""
    changed = item.with_status(user, status, ports.clock.now())
    if changed.status is item.status and user.role is not Role.ADMIN:
        return item  # a seller repeating themselves: nothing changes
    await work.items.update(changed)
    if user.role is Role.ADMIN:
        suspended_at = changed.updated_at if status is ItemStatus.SUSPENDED else None
        await work.moderation.record(item.id, suspended_at, reason)
        if audited:
            details = _status_change(item, status, reason)
            await append_audit(
                work, ports, user, AuditAction.ITEM_MODERATED, AuditTarget.ITEM, item.id, details
            )
    return changed


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
ArchiveItem = Callable[[User, str], Awaitable[None]]
"""(user, item id)"""
FindItems = Callable[[ItemFilter, int, str | None], Awaitable[Page[Item]]]
"""(filter with a status, limit, cursor)"""
