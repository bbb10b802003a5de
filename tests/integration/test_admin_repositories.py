"""The admin tools' repositories against real PostgreSQL and SQLite: the people list, the active-admin count
under concurrency, and the audit trail that commits or rolls back with the change it records."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest

from market.adapters.db.admin import PiccoloAdminUnitOfWork, SqlAuditLog, SqlUserDirectory
from market.adapters.db.webhooks import SqlWebhookDeliveryRepository
from market.application.admin import AdminPorts, change_account
from market.bootstrap import SystemClock, UuidGenerator
from market.domain.admin import AuditAction, AuditEntry, AuditFilter, AuditTarget, LastActiveAdmin, UserFilter
from market.domain.errors import InvalidCursor
from market.domain.users import Role, UserStatus
from market.domain.webhooks import DeliveryStatus
from tests.support.database import add_user, count
from tests.support.factories import T0


def _ports(db) -> AdminPorts:
    return AdminPorts(
        uow=lambda: PiccoloAdminUnitOfWork(db),
        directory=SqlUserDirectory(db),
        audit=SqlAuditLog(db),
        deliveries=SqlWebhookDeliveryRepository(db),
        clock=SystemClock(),
        ids=UuidGenerator(),
    )


def _entry(actor_id: str, n: int, **overrides) -> AuditEntry:
    values = {
        "id": str(uuid.uuid4()),
        "at": T0 + timedelta(seconds=n, microseconds=123),
        "actor_id": actor_id,
        "action": AuditAction.USER_UPDATED,
        "target_type": AuditTarget.USER,
        "target_id": str(uuid.uuid4()),
        "details": {"n": n, "flag": True, "none": None, "text": "é"},
        "trace_id": "a" * 32,
    }
    values.update(overrides)
    return AuditEntry(**values)


async def test_audit_entries_are_read_back_exactly_newest_first_and_paged(db):
    actor = await add_user(db, Role.ADMIN)
    log = SqlAuditLog(db)
    entries = [_entry(actor.id, n) for n in range(5)]
    for entry in entries:
        await log.append(entry)

    first = await log.find(AuditFilter(), 3, None)
    rest = await log.find(AuditFilter(), 3, first.next_cursor)

    assert list(first.items) + list(rest.items) == entries[::-1]
    assert rest.next_cursor is None
    with pytest.raises(InvalidCursor):
        await log.find(AuditFilter(actor_id=actor.id), 3, first.next_cursor)


async def test_audit_filters_by_actor_action_target_and_time(db):
    one, two = await add_user(db, Role.ADMIN), await add_user(db, Role.ADMIN)
    log = SqlAuditLog(db)
    a = _entry(one.id, 1)
    b = _entry(
        two.id, 2, action=AuditAction.MONITORING_TESTED, target_type=AuditTarget.MONITORING, target_id="slow"
    )
    c = _entry(one.id, 3)
    for entry in (a, b, c):
        await log.append(entry)

    async def ids(**kwargs):
        return [e.id for e in (await log.find(AuditFilter(**kwargs), 10, None)).items]

    assert await ids(actor_id=one.id) == [c.id, a.id]
    assert await ids(action=AuditAction.MONITORING_TESTED) == [b.id]
    assert await ids(target_id=a.target_id.upper()) == [a.id]
    assert await ids(since=b.at) == [c.id, b.id]
    assert await ids(until=b.at) == [a.id]
    assert await ids(actor_id="not-an-id") == []


async def test_an_audit_entry_rolls_back_with_the_change_it_records(db):
    actor = await add_user(db, Role.ADMIN)
    target = await add_user(db, Role.BUYER)
    async with PiccoloAdminUnitOfWork(db) as work:
        await work.users.set_status(target.id, UserStatus.DISABLED)
        await work.audit.append(_entry(actor.id, 1, target_id=target.id))
        # no commit
    assert await count(db, "audit_log") == 0
    assert (await SqlUserDirectory(db).find(UserFilter(status=UserStatus.DISABLED), 10, None)).items == []


async def test_the_people_list_matches_text_literally_and_filters(db):
    plain = await add_user(db, Role.BUYER, email="ada_lovelace@example.com", display_name="Ada")
    percent = await add_user(db, Role.SELLER, email="x@example.com", display_name="100% Wool")
    directory = SqlUserDirectory(db)

    async def ids(**kwargs):
        return {u.id for u in (await directory.find(UserFilter(**kwargs), 10, None)).items}

    assert await ids(query="a_l") == {plain.id}
    assert await ids(query="%") == {percent.id}
    assert await ids(query="wool") == {percent.id}
    assert await ids(role=Role.SELLER) == {percent.id}
    assert await ids(status=UserStatus.DISABLED) == set()


async def test_the_people_list_matches_accented_and_non_latin_names_whatever_their_case(db):
    # The API and the pages lower the query before it gets here; the stored names keep their capitals.
    emile = await add_user(db, Role.BUYER, email="emile@example.com", display_name="ÉMILE Ünïcode")
    boris = await add_user(db, Role.SELLER, email="boris@example.com", display_name="Борис Петров")
    directory = SqlUserDirectory(db)

    async def ids(query: str) -> set[str]:
        return {u.id for u in (await directory.find(UserFilter(query=query), 10, None)).items}

    assert await ids("émile") == {emile.id}
    assert await ids("ünïcode") == {emile.id}
    assert await ids("борис") == {boris.id}
    assert await ids("петров") == {boris.id}


async def test_the_people_list_matches_greek_names_ending_in_capital_sigma_whatever_the_sigma(db):
    # Python lowers a word-final Σ to ς (and the API lowers `q` so), PostgreSQL's lower() to σ: both sides fold
    # alike on both engines, for the whole name and for a query ending in Σ inside a longer word.
    nikos = await add_user(db, Role.BUYER, email="nikos@example.com", display_name="ΝΙΚΟΣ")
    kassandra = await add_user(db, Role.SELLER, email="k@example.com", display_name="ΚΑΣΣΑΝΔΡΑ Παπαδοπούλου")
    directory = SqlUserDirectory(db)

    async def ids(query: str) -> set[str]:
        return {u.id for u in (await directory.find(UserFilter(query=query), 10, None)).items}

    for query in ("ΝΙΚΟΣ".lower(), "νικος", "νικοσ"):
        assert await ids(query) == {nikos.id}, query
    for query in ("ΚΑΣ".lower(), "κασσ", "κασσανδρα"):
        assert await ids(query) == {kassandra.id}, query


async def test_the_people_list_matches_the_turkish_dotted_capital_i_whatever_its_form(db):
    # Python lowers İ (U+0130) to i + a combining dot (U+0307), and the API lowers `q` so; PostgreSQL's lower()
    # to a plain i (ICU collations to i + the dot): both sides fold it to a plain i, on both engines.
    ipek = await add_user(db, Role.BUYER, email="p1@example.com", display_name="İPEK Yılmaz")
    istanbul = await add_user(db, Role.SELLER, email="p2@example.com", display_name="Kebap İSTANBUL")
    # Typed as I + a combining dot above: the same letter, decomposed.
    izmir = await add_user(db, Role.SELLER, email="p3@example.com", display_name="I\u0307ZMI\u0307R Çarşı")
    directory = SqlUserDirectory(db)

    async def ids(query: str) -> set[str]:
        return {u.id for u in (await directory.find(UserFilter(query=query), 10, None)).items}

    for query in ("İpek".lower(), "ipek", "İPEK", "i\u0307pek"):
        assert await ids(query) == {ipek.id}, query
    for query in ("İSTANBUL".lower(), "istanbul", "kebap i"):
        assert await ids(query) == {istanbul.id}, query
    for query in ("İZMİR".lower(), "izmir"):
        assert await ids(query) == {izmir.id}, query


async def test_the_people_list_pages_newest_first(db):
    made = [await add_user(db, Role.BUYER, created_at=T0 + timedelta(minutes=n)) for n in range(5)]
    directory = SqlUserDirectory(db)
    first = await directory.find(UserFilter(), 2, None)
    second = await directory.find(UserFilter(), 2, first.next_cursor)
    third = await directory.find(UserFilter(), 2, second.next_cursor)
    assert [u for page in (first, second, third) for u in page.items] == made[::-1]
    assert third.next_cursor is None


async def test_two_admins_disabling_each_other_at_once_leave_one_active_admin(db):
    one, two = await add_user(db, Role.ADMIN), await add_user(db, Role.ADMIN)
    ports = _ports(db)

    results = await asyncio.gather(
        change_account(one, two.id, role=None, status=UserStatus.DISABLED, ports=ports),
        change_account(two, one.id, role=None, status=UserStatus.DISABLED, ports=ports),
        return_exceptions=True,
    )

    refused = [r for r in results if isinstance(r, BaseException)]
    assert len(refused) == 1 and isinstance(refused[0], LastActiveAdmin), results
    assert (
        len(
            (
                await SqlUserDirectory(db).find(
                    UserFilter(role=Role.ADMIN, status=UserStatus.ACTIVE), 10, None
                )
            ).items
        )
        == 1
    )
    assert await count(db, "audit_log") == 1


async def _delivery(db, seller_id: str, status: str) -> str:
    delivery_id = str(uuid.uuid4())
    await db.fetch(
        "INSERT INTO webhook_deliveries (id, seller_id, event_type, payload, status, attempts, next_attempt_at,"
        " traceparent, created_at, updated_at) VALUES ({}, {}, 'order.paid', {}, {}, 3, NULL, NULL, {}, {})",
        delivery_id,
        seller_id,
        "{}",
        status,
        T0,
        T0,
    )
    return delivery_id


@pytest.mark.parametrize(
    ("status", "retried"), [("failed", True), ("pending", True), ("delivered", False), ("disabled", False)]
)
async def test_only_pending_or_failed_deliveries_are_made_due_now(db, status, retried):
    seller = await add_user(db, Role.SELLER)
    deliveries = SqlWebhookDeliveryRepository(db)
    delivery_id = await _delivery(db, seller.id, status)
    now = T0 + timedelta(hours=1)

    assert await deliveries.retry_now(delivery_id, now) is retried

    record = await deliveries.get(delivery_id)
    assert record is not None and record.id == delivery_id
    assert record.status.value == ("pending" if retried else status)
    claimed = await deliveries.claim_due(now, 10, timedelta(seconds=60))
    assert [c.id for c in claimed] == ([delivery_id] if retried else [])


async def test_deliveries_are_found_by_seller_and_status(db):
    one, two = await add_user(db, Role.SELLER), await add_user(db, Role.SELLER)
    failed = await _delivery(db, one.id, "failed")
    delivered = await _delivery(db, two.id, "delivered")
    deliveries = SqlWebhookDeliveryRepository(db)

    async def ids(seller_id=None, status=None):
        return {d.id for d in (await deliveries.find(seller_id, status, 10, None)).items}

    assert await ids() == {failed, delivered}
    assert await ids(seller_id=one.id) == {failed}
    assert await ids(status=DeliveryStatus.DELIVERED) == {delivered}
    assert await ids(seller_id=one.id, status=DeliveryStatus.DELIVERED) == set()
    assert await deliveries.get("not-an-id") is None
