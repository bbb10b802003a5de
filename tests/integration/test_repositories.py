"""The Piccolo user and item repositories and the unit of work, against real databases."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import timedelta

import pytest

from market.adapters.db.repositories import PiccoloItemRepository, PiccoloUnitOfWork, PiccoloUserRepository
from market.domain.catalog import ItemStatus
from market.domain.errors import EmailAlreadyRegistered
from market.domain.users import Role

from .conftest import T0, add_item, add_user, count, new_item, new_user

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


async def test_an_update_changes_that_item_only(db):
    items = PiccoloItemRepository(db)
    seller = await add_user(db)
    item = await add_item(db, seller, title="Blue mug")
    other = await add_item(db, seller, title="Red mug")
    changed = dataclasses.replace(
        item,
        title="Green mug",
        description="Now green.",
        price_cents=2500,
        currency="USD",
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
