"""The admin tools' use cases with in-memory fakes: changing accounts, the rules that keep an admin in charge,
and the audit trail written with every change."""

from __future__ import annotations

import dataclasses

import pytest

from market.application.admin import change_account, find_audit, find_users, record_admin_action
from market.application.deliveries import retry_delivery
from market.application.moderation import edit_item, set_item_status
from market.domain.admin import (
    AuditAction,
    AuditFilter,
    AuditTarget,
    DeliveryNotRetryable,
    LastActiveAdmin,
    SelfLockout,
    UserFilter,
    audit_details,
    check_account_change,
)
from market.domain.catalog import ItemStatus
from market.domain.errors import NotFound, PermissionDenied, ValidationFailed
from market.domain.users import Role, UserStatus
from market.domain.webhooks import DeliveryRecord, DeliveryStatus
from market.ops.selftest import MonitoringTestError, produce_monitoring_signal, run_monitoring_self_test
from tests.support.factories import user
from tests.support.world import ADMIN, OTHER_SELLER, SELLER, World


def the_audit_entry(world: World, actor, action: AuditAction, target_type: AuditTarget, target_id: str):
    """The one audit entry the world holds, checked to be `actor`'s `action` on the target."""
    [entry] = world.audit
    assert (entry.actor_id, entry.action, entry.target_type, entry.target_id) == (
        actor.id,
        action,
        target_type,
        target_id,
    )
    return entry


async def _world_with(*people):
    world = World()
    for person in people:
        world.store.users[person.id] = person
    return world


async def test_disabling_a_user_ends_their_tokens_at_once_and_is_audited():
    world = World()
    buyer = await world.register("b@example.com")
    token = await world.token("b@example.com", "correct horse battery")
    world.store.users[ADMIN.id] = ADMIN

    changed = await change_account(ADMIN, buyer.id, role=None, status=UserStatus.DISABLED, ports=world.admin)

    assert changed.status is UserStatus.DISABLED
    assert not world.accepted(token)
    entry = the_audit_entry(world, ADMIN, AuditAction.USER_UPDATED, AuditTarget.USER, buyer.id)
    assert entry.details == {"status_from": "active", "status_to": "disabled"}


async def test_a_new_role_applies_without_signing_the_user_out():
    world = World()
    buyer = await world.register("b@example.com")
    token = await world.token("b@example.com", "correct horse battery")
    world.store.users[ADMIN.id] = ADMIN

    changed = await change_account(ADMIN, buyer.id, role=Role.SELLER, status=None, ports=world.admin)

    assert changed.role is Role.SELLER
    assert world.accepted(token)
    assert world.audit[0].details == {"role_from": "buyer", "role_to": "seller"}


async def test_a_change_that_changes_nothing_writes_no_audit_entry():
    world = await _world_with(ADMIN, seller := user(Role.SELLER, "s-1"))
    await change_account(ADMIN, seller.id, role=Role.SELLER, status=UserStatus.ACTIVE, ports=world.admin)
    assert world.audit == []


@pytest.mark.parametrize(("role", "status"), [(Role.BUYER, None), (None, UserStatus.DISABLED)])
async def test_an_admin_cannot_demote_or_disable_themselves(role, status):
    other_admin = user(Role.ADMIN, "admin-2")
    world = await _world_with(ADMIN, other_admin)
    with pytest.raises(SelfLockout):
        await change_account(ADMIN, ADMIN.id, role=role, status=status, ports=world.admin)
    assert world.store.users[ADMIN.id] == ADMIN
    assert world.audit == []


async def test_the_last_active_admin_cannot_be_removed_even_by_an_admin_being_disabled_meanwhile():
    # The actor's own account was disabled by a concurrent request: only the target is still active.
    actor = user(Role.ADMIN, "admin-2")
    world = await _world_with(ADMIN)
    with pytest.raises(LastActiveAdmin):
        await change_account(actor, ADMIN.id, role=None, status=UserStatus.DISABLED, ports=world.admin)
    assert world.store.users[ADMIN.id].status is UserStatus.ACTIVE


def test_removing_one_of_two_active_admins_is_allowed_but_not_the_last():
    target = user(Role.ADMIN, "admin-2")
    check_account_change(ADMIN, target, Role.SELLER, None, active_admins=2)
    with pytest.raises(LastActiveAdmin):
        check_account_change(ADMIN, target, Role.SELLER, None, active_admins=1)
    # A disabled admin is not an active one: changing it never counts against the rule.
    disabled = dataclasses.replace(target, status=UserStatus.DISABLED)
    check_account_change(ADMIN, disabled, Role.BUYER, None, active_admins=1)


async def test_changing_an_unknown_user_is_not_found():
    world = await _world_with(ADMIN)
    with pytest.raises(NotFound):
        await change_account(ADMIN, "nobody", role=Role.SELLER, status=None, ports=world.admin)


def test_audit_details_never_keep_secrets():
    kept = audit_details(
        {
            "role_to": "seller",
            "password": "x",
            "new_password": "y",
            "api_token": "t",
            "card_number": "4242",
            "secret_key": "k",
            "Authorization": "Bearer z",
            "count": 2,
        }
    )
    assert kept == {"role_to": "seller", "count": 2}


async def test_a_monitoring_self_test_is_one_audit_entry_committed_on_its_own():
    world = await _world_with(ADMIN)
    await record_admin_action(
        ADMIN,
        AuditAction.MONITORING_TESTED,
        AuditTarget.MONITORING,
        "slow",
        {"kind": "slow"},
        ports=world.admin,
    )
    page = await find_audit(AuditFilter(action=AuditAction.MONITORING_TESTED), 10, None, ports=world.admin)
    assert [(e.target_id, e.details) for e in page.items] == [("slow", {"kind": "slow"})]


async def test_people_are_filtered_by_text_role_and_status():
    ada = user(Role.BUYER, "u-1", email="ada@example.com")
    bob = user(Role.SELLER, "u-2", email="bob@example.com")
    world = await _world_with(ADMIN, ada, bob)
    await change_account(ADMIN, bob.id, role=None, status=UserStatus.DISABLED, ports=world.admin)

    by_text = await find_users(UserFilter(query="ada@"), 10, None, ports=world.admin)
    by_role = await find_users(UserFilter(role=Role.SELLER), 10, None, ports=world.admin)
    by_status = await find_users(UserFilter(status=UserStatus.DISABLED), 10, None, ports=world.admin)

    assert [u.id for u in by_text.items] == [ada.id]
    assert [u.id for u in by_role.items] == [bob.id]
    assert [u.id for u in by_status.items] == [bob.id]


# --- moderation --------------------------------------------------------------------------------------------


async def _listed(world):
    world.store.users[ADMIN.id] = ADMIN
    return await world.list(SELLER)


async def test_an_admin_suspends_an_item_with_a_reason_and_it_is_audited():
    world = World()
    item = await _listed(world)

    suspended = await set_item_status(ADMIN, item.id, ItemStatus.SUSPENDED, "counterfeit", ports=world.admin)

    assert suspended.status is ItemStatus.SUSPENDED
    assert world.store.items[item.id].status is ItemStatus.SUSPENDED
    [entry] = world.audit
    assert (entry.action, entry.target_type, entry.target_id) == (
        AuditAction.ITEM_MODERATED,
        AuditTarget.ITEM,
        item.id,
    )
    assert entry.details == {"status_from": "active", "status_to": "suspended", "reason": "counterfeit"}


@pytest.mark.parametrize("status", [ItemStatus.ACTIVE, ItemStatus.ARCHIVED])
async def test_a_seller_cannot_bring_back_or_archive_a_suspended_item(status):
    world = World()
    item = await _listed(world)
    await set_item_status(ADMIN, item.id, ItemStatus.SUSPENDED, "counterfeit", ports=world.admin)

    with pytest.raises(PermissionDenied):
        await set_item_status(SELLER, item.id, status, None, ports=world.admin)
    await world.archive(SELLER, item.id)  # DELETE is a no-op: it stays suspended

    assert world.store.items[item.id].status is ItemStatus.SUSPENDED


async def test_a_seller_restores_their_own_archived_item_without_an_audit_entry():
    world = World()
    item = await _listed(world)
    await world.archive(SELLER, item.id)

    restored = await set_item_status(SELLER, item.id, ItemStatus.ACTIVE, None, ports=world.admin)

    assert restored.status is ItemStatus.ACTIVE
    assert (await world.view(item.id)).id == item.id
    assert world.audit == []


async def test_sellers_cannot_suspend_nor_touch_another_sellers_item():
    world = World()
    item = await _listed(world)
    with pytest.raises(PermissionDenied):
        await set_item_status(SELLER, item.id, ItemStatus.SUSPENDED, None, ports=world.admin)
    with pytest.raises(PermissionDenied):
        await set_item_status(OTHER_SELLER, item.id, ItemStatus.ARCHIVED, None, ports=world.admin)
    with pytest.raises(NotFound):
        await set_item_status(ADMIN, "nothing", ItemStatus.ACTIVE, "x", ports=world.admin)
    assert world.store.items[item.id].status is ItemStatus.ACTIVE


async def test_an_admins_edit_of_an_items_fields_is_audited_with_what_changed():
    world = World()
    item = await _listed(world)

    await edit_item(
        ADMIN, item.id, None, {"title": "Renamed", "price_cents": 1, "stock": item.stock}, ports=world.admin
    )

    entry = the_audit_entry(world, ADMIN, AuditAction.ITEM_UPDATED, AuditTarget.ITEM, item.id)
    assert entry.details == {  # the stock sent as it was is not a change
        "title_from": item.title,
        "title_to": "Renamed",
        "price_cents_from": item.price.cents,
        "price_cents_to": 1,
    }


async def test_a_sellers_edit_of_their_own_item_writes_no_audit_entry():
    world = World()
    item = await _listed(world)
    await edit_item(SELLER, item.id, None, {"title": "Renamed"}, ports=world.admin)
    await world.archive(SELLER, item.id)
    assert world.audit == []


async def test_an_admin_archiving_an_item_is_audited_once():
    world = World()
    item = await _listed(world)

    await world.archive(ADMIN, item.id)
    await world.archive(ADMIN, item.id)  # already archived: nothing changes, nothing to audit

    assert world.store.items[item.id].status is ItemStatus.ARCHIVED
    [entry] = world.audit
    assert (entry.action, entry.target_id) == (AuditAction.ITEM_MODERATED, item.id)
    assert entry.details == {"status_from": "active", "status_to": "archived", "reason": None}


# --- webhook deliveries ------------------------------------------------------------------------------------


def _delivery(world, status: DeliveryStatus, seller=SELLER) -> DeliveryRecord:
    now = world.clock.now()
    record = DeliveryRecord(
        f"d-{len(world.deliveries)}", seller.id, "order.paid", status, 3, 500, None, None, now, now
    )
    world.deliveries[record.id] = record
    return record


async def test_an_admin_retries_a_failed_delivery_and_it_is_audited():
    world = await _world_with(ADMIN)
    failed = _delivery(world, DeliveryStatus.FAILED)

    retried = await retry_delivery(ADMIN, failed.id, ports=world.admin)

    assert (retried.id, retried.status) == (failed.id, DeliveryStatus.PENDING)
    assert world.deliveries[failed.id].status is DeliveryStatus.PENDING
    [entry] = world.audit
    assert (entry.action, entry.target_id, entry.details) == (
        AuditAction.WEBHOOK_RETRIED,
        failed.id,
        {"seller_id": SELLER.id, "status_from": "failed"},
    )


@pytest.mark.parametrize("status", [DeliveryStatus.DELIVERED, DeliveryStatus.DISABLED])
async def test_a_delivered_or_disabled_delivery_is_not_retried(status):
    world = await _world_with(ADMIN)
    settled = _delivery(world, status)
    with pytest.raises(DeliveryNotRetryable):
        await retry_delivery(ADMIN, settled.id, ports=world.admin)
    assert world.deliveries[settled.id].status is status
    assert world.audit == []


async def test_a_seller_retries_only_their_own_delivery_and_without_an_audit_entry():
    world = await _world_with(ADMIN)
    mine = _delivery(world, DeliveryStatus.FAILED)
    with pytest.raises(NotFound):
        await retry_delivery(OTHER_SELLER, mine.id, ports=world.admin)
    assert world.deliveries[mine.id].status is DeliveryStatus.FAILED

    await retry_delivery(SELLER, mine.id, ports=world.admin)

    assert world.deliveries[mine.id].status is DeliveryStatus.PENDING
    assert world.audit == []


async def test_a_seller_restores_and_changes_their_archived_item_in_one_edit():
    world = World()
    item = await _listed(world)
    await world.archive(SELLER, item.id)

    edited = await edit_item(SELLER, item.id, ItemStatus.ACTIVE, {"stock": 7}, ports=world.admin)

    assert (edited.status, edited.stock) == (ItemStatus.ACTIVE, 7)
    assert world.store.items[item.id].stock == 7


async def test_an_edit_refused_half_way_changes_nothing():
    world = World()
    item = await _listed(world)
    with pytest.raises(NotFound):  # archived, then its fields: only an active item's fields are edited
        await edit_item(SELLER, item.id, ItemStatus.ARCHIVED, {"stock": 7}, ports=world.admin)
    assert world.store.items[item.id] == item

    await world.archive(SELLER, item.id)
    archived = world.store.items[item.id]
    with pytest.raises(ValidationFailed):  # restored, then a title the domain refuses
        await edit_item(SELLER, item.id, ItemStatus.ACTIVE, {"title": "   "}, ports=world.admin)
    assert world.store.items[item.id] == archived


async def test_an_edit_of_an_archived_item_without_its_status_is_a_404():
    world = World()
    item = await _listed(world)
    await world.archive(SELLER, item.id)
    with pytest.raises(NotFound):
        await edit_item(SELLER, item.id, None, {"stock": 7}, ports=world.admin)


async def test_the_self_test_of_kind_error_is_audited_before_it_fails_on_purpose():
    world = await _world_with(ADMIN)

    async def record(*args):
        return await record_admin_action(*args, ports=world.admin)

    async def produce(kind, **context):
        return await produce_monitoring_signal(kind, sandbox_gateway=None, events=None, **context)

    with pytest.raises(MonitoringTestError):
        await run_monitoring_self_test(
            "error",
            user=ADMIN,
            route="/x",
            method="POST",
            record_admin_action=record,
            produce_monitoring_signal=produce,
        )
    [entry] = world.audit
    assert (entry.action, entry.target_id, entry.details) == (
        AuditAction.MONITORING_TESTED,
        "error",
        {"kind": "error"},
    )
