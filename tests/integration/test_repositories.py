"""The Piccolo user and item repositories and the unit of work, against real databases."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from datetime import timedelta

import pytest

from market.adapters.db.repositories import PiccoloItemRepository, PiccoloUnitOfWork, PiccoloUserRepository
from market.domain.catalog import ItemFilter, ItemStatus
from market.domain.errors import EmailAlreadyRegistered
from market.domain.money import Money
from market.domain.users import Role, UserStatus
from tests.support.database import add_item, add_user, count, new_item, new_user
from tests.support.factories import T0

MALFORMED_IDS = [
    "",
    "42",
    "not-a-uuid",
    "'; DROP TABLE users; --",
    "00000000-0000-4000-8000-00000000000g",
    "🙂",
]


# --- users ------------------------------------------------------------------------------------------------


async def test_a_user_is_read_back_by_id_and_by_email_exactly_as_stored(db):
    users = PiccoloUserRepository(db)
    user = new_user(Role.BUYER, email="ada@example.com")
    await users.add(user)
    assert await users.get(user.id) == user
    assert await users.get_by_email("ada@example.com") == user


async def test_unknown_users_are_none(db):
    users = PiccoloUserRepository(db)
    await add_user(db)
    assert await users.get(str(uuid.uuid4())) is None
    assert await users.get_by_email("nobody@example.com") is None


@pytest.mark.parametrize("bad_id", MALFORMED_IDS)
async def test_a_malformed_user_id_gives_none(db, bad_id):
    await add_user(db)
    assert await PiccoloUserRepository(db).get(bad_id) is None


async def test_a_taken_email_raises_email_already_registered_and_writes_nothing(db):
    users = PiccoloUserRepository(db)
    first = await add_user(db, email="ada@example.com")
    second = new_user(Role.SELLER, email="ada@example.com", display_name="Impostor")
    with pytest.raises(EmailAlreadyRegistered):
        await users.add(second)
    assert await users.get(second.id) is None
    assert await users.get_by_email("ada@example.com") == first
    assert await count(db, "users") == 1


async def test_a_taken_email_in_a_unit_of_work_rolls_back_its_earlier_writes(db):
    await add_user(db, email="ada@example.com")
    earlier = new_user(email="bob@example.com")
    with pytest.raises(EmailAlreadyRegistered):
        async with PiccoloUnitOfWork(db) as work:
            await work.users.add(earlier)
            await work.users.add(new_user(email="ada@example.com"))
            await work.commit()
    assert await PiccoloUserRepository(db).get(earlier.id) is None
    assert await count(db, "users") == 1


async def test_token_version_status_and_last_login_are_read_back_as_stored(db):
    users = PiccoloUserRepository(db)
    user = new_user(
        Role.BUYER, token_version=7, status=UserStatus.DISABLED, last_login_at=T0 + timedelta(microseconds=42)
    )
    await users.add(user)
    assert await users.get(user.id) == user


async def test_a_new_user_is_active_at_token_version_zero_and_never_signed_in(db):
    user = await add_user(db)
    stored = await PiccoloUserRepository(db).get(user.id)
    assert (stored.token_version, stored.status, stored.last_login_at) == (0, UserStatus.ACTIVE, None)


async def _in_unit_of_work(db, change):
    async with PiccoloUnitOfWork(db) as work:
        await change(work.users)
        await work.commit()


async def test_account_changes_touch_only_that_user_and_only_their_column(db):
    users = PiccoloUserRepository(db)
    user, other = await add_user(db), await add_user(db)
    at = T0 + timedelta(days=3, microseconds=5)

    await _in_unit_of_work(db, lambda repo: repo.replace_password(user.id, "$argon2id$new"))
    await _in_unit_of_work(db, lambda repo: repo.revoke_tokens(user.id))
    await _in_unit_of_work(db, lambda repo: repo.set_status(user.id, UserStatus.DISABLED))
    await _in_unit_of_work(db, lambda repo: repo.record_login(user.id, at))

    assert await users.get(user.id) == dataclasses.replace(
        user, password_hash="$argon2id$new", token_version=2, status=UserStatus.DISABLED, last_login_at=at
    )
    assert await users.get(other.id) == other
    await _in_unit_of_work(db, lambda repo: repo.set_status(user.id, UserStatus.ACTIVE))
    assert (await users.get(user.id)).status is UserStatus.ACTIVE


async def test_concurrent_revocations_each_bump_the_token_version(db):
    user = await add_user(db)
    await asyncio.gather(*(_in_unit_of_work(db, lambda repo: repo.revoke_tokens(user.id)) for _ in range(10)))
    assert (await PiccoloUserRepository(db).get(user.id)).token_version == 10


async def test_of_concurrent_password_replacements_under_one_token_version_only_one_is_written(db):
    user = await add_user(db)
    users = PiccoloUserRepository(db)

    async def replace(n: int) -> bool:
        async with PiccoloUnitOfWork(db) as work:
            written = await work.users.replace_password(user.id, f"$argon2id${n}", token_version=0)
            await work.commit()
        return written

    written = await asyncio.gather(*(replace(n) for n in range(10)))

    assert written.count(True) == 1
    assert await users.get(user.id) == dataclasses.replace(
        user, password_hash=f"$argon2id${written.index(True)}", token_version=1
    )


async def test_a_conditional_revocation_under_a_stale_token_version_changes_nothing(db):
    user = await add_user(db)
    users = PiccoloUserRepository(db)
    await _in_unit_of_work(db, lambda repo: repo.revoke_tokens(user.id))

    async with PiccoloUnitOfWork(db) as work:
        stale = await work.users.revoke_tokens(user.id, token_version=0)
        stale_password = await work.users.replace_password(user.id, "$argon2id$late", token_version=0)
        current = await work.users.revoke_tokens(user.id, token_version=1)
        await work.commit()

    assert (stale, stale_password, current) == (False, False, True)
    assert await users.get(user.id) == dataclasses.replace(user, token_version=2)


async def test_account_changes_left_uncommitted_are_rolled_back(db):
    user = await add_user(db)
    async with PiccoloUnitOfWork(db) as work:
        await work.users.revoke_tokens(user.id)
        await work.users.set_status(user.id, UserStatus.DISABLED)
    assert await PiccoloUserRepository(db).get(user.id) == user


async def test_listing_users_gives_every_account_oldest_first(db):
    newer = await add_user(db, created_at=T0 + timedelta(days=1))
    older = await add_user(db, created_at=T0)
    assert [u.id for u in await PiccoloUserRepository(db).list_all()] == [older.id, newer.id]


# --- items ------------------------------------------------------------------------------------------------


async def test_an_item_is_read_back_exactly_as_stored(db):
    seller = await add_user(db)
    item = new_item(
        seller,
        title="Ceramic mug ☕",
        description="Hand-thrown; 'quotes' and \"double quotes\".",
        price_cents=10**12,
        currency="JPY",
        stock=0,
        created_at=T0 + timedelta(microseconds=654_321),
        updated_at=T0 + timedelta(days=1),
    )
    await PiccoloItemRepository(db).add(item)
    assert await PiccoloItemRepository(db).get(item.id) == item
    # Browsing and searching read the same columns by position on PostgreSQL (rows.item_from_row).
    browsed = await PiccoloItemRepository(db).browse(ItemFilter(), 10, None)
    searched = await PiccoloItemRepository(db).browse(ItemFilter(query="ceramic"), 10, None)
    assert browsed.items == [item] and searched.items == [item]


async def test_an_update_changes_that_item_only(db):
    items = PiccoloItemRepository(db)
    seller = await add_user(db)
    item = await add_item(db, seller, title="Blue mug")
    other = await add_item(db, seller, title="Red mug")
    changed = dataclasses.replace(
        item,
        title="Green mug",
        description="Now green.",
        price=Money(2500, "USD"),
        stock=9,
        category="home",
        status=ItemStatus.ARCHIVED,
        updated_at=T0 + timedelta(hours=2),
    )
    await items.update(changed)
    assert await items.get(item.id) == changed
    assert await items.get(other.id) == other


async def test_an_item_id_in_another_spelling_finds_the_item(db):
    item = await add_item(db, await add_user(db))
    assert await PiccoloItemRepository(db).get(item.id.upper()) == item


@pytest.mark.parametrize("bad_id", MALFORMED_IDS)
async def test_a_malformed_item_id_gives_none(db, bad_id):
    await add_item(db, await add_user(db))
    assert await PiccoloItemRepository(db).get(bad_id) is None
    assert await count(db, "items") == 1


async def test_an_unknown_item_is_none(db):
    assert await PiccoloItemRepository(db).get(str(uuid.uuid4())) is None


# --- the unit of work -------------------------------------------------------------------------------------


async def test_a_unit_of_work_without_commit_rolls_back(db):
    seller = await add_user(db)
    kept = await add_item(db, seller, stock=5)
    user = new_user()
    item = new_item(seller)
    async with PiccoloUnitOfWork(db) as work:
        await work.users.add(user)
        await work.items.add(item)
        await work.items.update(dataclasses.replace(kept, stock=0))
        assert await work.users.get(user.id) == user  # visible inside the transaction
    reads = PiccoloUserRepository(db), PiccoloItemRepository(db)
    assert await reads[0].get(user.id) is None
    assert await reads[1].get(item.id) is None
    assert (await reads[1].get(kept.id)).stock == 5


async def test_a_committed_unit_of_work_persists_its_writes(db):
    seller = await add_user(db)
    item = new_item(seller)
    async with PiccoloUnitOfWork(db) as work:
        await work.items.add(item)
        await work.commit()
    assert await PiccoloItemRepository(db).get(item.id) == item


async def test_an_exception_in_a_unit_of_work_rolls_back_and_propagates(db):
    user = new_user()

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        async with PiccoloUnitOfWork(db) as work:
            await work.users.add(user)
            raise Boom()
    assert await PiccoloUserRepository(db).get(user.id) is None


async def test_the_database_stays_usable_after_a_rolled_back_unit_of_work(db):
    async with PiccoloUnitOfWork(db) as work:
        await work.users.add(new_user())
    user = await add_user(db)
    async with PiccoloUnitOfWork(db) as work:
        assert await work.users.get(user.id) == user
        await work.commit()
    assert await count(db, "users") == 1
