"""Catalog use cases with in-memory fakes: list, change, archive, view and browse."""

from __future__ import annotations

import dataclasses

import pytest

from market.domain.catalog import ItemFilter, ItemStatus, normalise_query
from market.domain.errors import NotFound, PermissionDenied, ValidationFailed
from market.domain.events import ItemListed, ItemViewed, SearchPerformed
from market.domain.money import Money
from market.domain.users import UserStatus
from tests.support.factories import item
from tests.support.world import ADMIN, BUYER, OTHER_SELLER, SELLER, World


@pytest.fixture
def world() -> World:
    return World()


# --- listing ----------------------------------------------------------------------------------------------


async def test_a_seller_lists_an_item_which_is_stored_and_announced(world):
    listed = await world.list(title="Blue mug")
    assert world.store.items == {listed.id: listed}
    assert listed.seller_id == SELLER.id and listed.status is ItemStatus.ACTIVE
    assert world.events.published == [ItemListed(listed.id, SELLER.id)]


async def test_a_buyer_cannot_list_an_item(world):
    with pytest.raises(PermissionDenied):
        await world.list(seller=BUYER)
    assert world.store.items == {}
    assert world.events.published == []


async def test_an_invalid_listing_stores_nothing(world):
    with pytest.raises(ValidationFailed):
        await world.list(price_cents=-5)
    assert world.store.items == {}


# --- changing ---------------------------------------------------------------------------------------------


async def test_the_owning_seller_changes_their_item(world):
    listed = await world.list()
    changed = await world.change(SELLER, listed.id, {"price_cents": 2500, "title": "Big mug"})
    assert world.store.items[listed.id] == changed
    assert (changed.price, changed.title) == (Money(2500, "EUR"), "Big mug")
    assert changed.updated_at > listed.updated_at


async def test_another_seller_gets_permission_denied_and_the_item_is_unchanged(world):
    listed = await world.list()
    with pytest.raises(PermissionDenied):
        await world.change(OTHER_SELLER, listed.id, {"price_cents": 1})
    assert world.store.items[listed.id] == listed


async def test_an_admin_changes_any_sellers_item(world):
    listed = await world.list()
    changed = await world.change(ADMIN, listed.id, {"stock": 0})
    assert world.store.items[listed.id].stock == 0
    assert changed.seller_id == SELLER.id


async def test_a_change_cannot_move_an_item_to_another_seller_or_status(world):
    listed = await world.list()
    await world.change(SELLER, listed.id, {"seller_id": OTHER_SELLER.id, "status": "archived"})
    stored = world.store.items[listed.id]
    assert (stored.seller_id, stored.status) == (SELLER.id, ItemStatus.ACTIVE)


async def test_an_invalid_change_leaves_the_item_as_it_was(world):
    listed = await world.list()
    with pytest.raises(ValidationFailed):
        await world.change(SELLER, listed.id, {"stock": -1})
    assert world.store.items[listed.id] == listed


@pytest.mark.parametrize("item_id", ["00000000-0000-4000-8000-000000000999", "not-an-id"])
async def test_changing_an_unknown_item_raises_not_found(world, item_id):
    with pytest.raises(NotFound):
        await world.change(SELLER, item_id, {"stock": 1})


async def test_changing_an_archived_item_raises_not_found(world):
    listed = await world.list()
    await world.archive(SELLER, listed.id)
    with pytest.raises(NotFound):
        await world.change(SELLER, listed.id, {"stock": 1})


# --- archiving --------------------------------------------------------------------------------------------


async def test_the_owner_archives_an_item(world):
    listed = await world.list()
    await world.archive(SELLER, listed.id)
    assert world.store.items[listed.id].status is ItemStatus.ARCHIVED


async def test_another_seller_cannot_archive_an_item(world):
    listed = await world.list()
    with pytest.raises(PermissionDenied):
        await world.archive(OTHER_SELLER, listed.id)
    assert world.store.items[listed.id].status is ItemStatus.ACTIVE


async def test_archiving_twice_is_a_no_op(world):
    listed = await world.list()
    await world.archive(ADMIN, listed.id)
    first = world.store.items[listed.id]
    await world.archive(ADMIN, listed.id)
    assert world.store.items[listed.id] == first


# --- viewing ----------------------------------------------------------------------------------------------


async def test_viewing_an_active_item_returns_it_and_publishes_item_viewed(world):
    listed = await world.list()
    world.events.published.clear()
    assert await world.view(listed.id) == listed
    assert world.events.published == [ItemViewed(listed.id, listed.seller_id)]


async def test_viewing_an_archived_item_raises_not_found_and_publishes_nothing(world):
    listed = await world.list()
    await world.archive(SELLER, listed.id)
    world.events.published.clear()
    with pytest.raises(NotFound):
        await world.view(listed.id)
    assert world.events.published == []


async def test_viewing_an_unknown_item_raises_not_found_and_publishes_nothing(world):
    with pytest.raises(NotFound):
        await world.view("00000000-0000-4000-8000-000000000999")
    assert world.events.published == []


# --- browsing ---------------------------------------------------------------------------------------------


async def test_browsing_without_a_query_is_not_a_search(world):
    await world.list()
    world.events.published.clear()
    page = await world.browse(ItemFilter(category="kitchen"))
    assert len(page.items) == 1
    assert world.events.published == []


async def test_a_search_publishes_search_performed_with_the_result_count(world):
    for title in ("Blue mug", "Red mug", "Teapot"):
        await world.list(title=title, description="")
    world.events.published.clear()
    page = await world.browse(ItemFilter(query=normalise_query("MUG")))
    assert len(page.items) == 2
    assert world.events.published == [SearchPerformed("mug", 2)]


async def test_a_search_with_no_results_is_published_with_zero(world):
    await world.list(title="Blue mug")
    world.events.published.clear()
    await world.browse(ItemFilter(query="kettle"))
    assert world.events.published == [SearchPerformed("kettle", 0)]


@pytest.mark.parametrize(
    ("query", "recorded"),
    [
        ("bob@example.com", "[Filtered]"),
        ("order for bob@example.com", "order for [Filtered]"),
        ("4242 4242 4242 4242", "[Filtered]"),
        ("tok_visa", "[Filtered]"),
        ("blue mug 2024", "blue mug 2024"),
    ],
)
async def test_a_search_is_recorded_without_the_personal_data_typed_into_it(world, query, recorded):
    # The query reaches the analytics log, the search report and the session timeline: a shopper who pastes
    # their e-mail or card number into the search box must not leave it there.
    await world.browse(ItemFilter(query=normalise_query(query)))
    assert world.events.published == [SearchPerformed(recorded, 0)]


async def test_only_the_first_page_of_a_search_counts_as_a_search(world):
    for n in range(3):
        await world.list(title=f"Mug {n}")
    world.events.published.clear()
    first = await world.browse(ItemFilter(query="mug"), limit=2)
    assert first.next_cursor is not None
    await world.browse(ItemFilter(query="mug"), limit=2, cursor=first.next_cursor)
    assert world.events.published == [SearchPerformed("mug", 2)]


async def test_archived_items_are_not_browsed(world):
    kept = await world.list(title="Kept mug")
    gone = await world.list(title="Gone mug")
    await world.archive(SELLER, gone.id)
    page = await world.browse()
    assert [i.id for i in page.items] == [kept.id]


async def test_a_disabled_sellers_items_leave_the_catalog_and_come_back_when_they_are_enabled(world):
    theirs = await world.list(OTHER_SELLER, title="Their mug")
    mine = await world.list(title="My mug")
    world.store.users[OTHER_SELLER.id] = dataclasses.replace(OTHER_SELLER, status=UserStatus.DISABLED)
    with pytest.raises(NotFound):
        await world.view(theirs.id)
    assert [i.id for i in (await world.browse()).items] == [mine.id]
    assert [i.id for i in (await world.browse(ItemFilter(query="mug"))).items] == [mine.id]
    assert world.store.items[theirs.id] == theirs, "hidden, not changed"
    world.store.users[OTHER_SELLER.id] = OTHER_SELLER
    assert await world.view(theirs.id) == theirs
    assert {i.id for i in (await world.browse()).items} == {mine.id, theirs.id}


# --- the unit of work -------------------------------------------------------------------------------------


async def test_a_unit_of_work_left_without_commit_leaves_nothing(world):
    async with world.store.uow() as work:
        await work.users.add(SELLER)
        await work.items.add(item())
    assert world.store.users == {}
    assert world.store.items == {}


async def test_a_committed_unit_of_work_makes_its_writes_visible(world):
    async with world.store.uow() as work:
        await work.items.add(item())
        await work.commit()
    assert list(world.store.items) == ["item-1"]
