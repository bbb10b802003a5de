"""Browsing (newest first, keyset cursors) and full-text search (relevance), on both engines."""

from __future__ import annotations

import base64
import dataclasses
import json
import random
import string
from datetime import timedelta

import pytest

from market.adapters.db.admin import SqlItemModeration
from market.adapters.db.repositories import PiccoloItemRepository, PiccoloUserRepository
from market.domain.catalog import ItemFilter, ItemStatus, normalise_query
from market.domain.errors import InvalidCursor
from market.domain.users import UserStatus
from tests.support.database import add_item, add_user, count
from tests.support.factories import T0


async def _walk(items: PiccoloItemRepository, item_filter: ItemFilter, limit: int) -> list[list[str]]:
    """Every page's item ids, following next_cursor to the end."""
    pages: list[list[str]] = []
    cursor = None
    while True:
        page = await items.browse(item_filter, limit, cursor)
        pages.append([i.id for i in page.items])
        assert len(pages) < 100, "pagination does not end"
        if page.next_cursor is None:
            return pages
        cursor = page.next_cursor


def _search(query: str, **filters) -> ItemFilter:
    return ItemFilter(query=normalise_query(query), **filters)


def _tampered(cursor: str, **changes) -> str:
    payload = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    payload.update(changes)
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


# --- browse -----------------------------------------------------------------------------------------------


async def test_browsing_pages_newest_first_and_visits_every_item_exactly_once(db):
    items = PiccoloItemRepository(db)
    seller = await add_user(db)
    # Three items per timestamp (ties are broken by id), on whole and half seconds.
    added = [
        await add_item(db, seller, title=f"Item {n}", created_at=T0 + timedelta(milliseconds=500 * (n // 3)))
        for n in range(23)
    ]
    expected = [i.id for i in sorted(added, key=lambda i: (i.created_at, i.id), reverse=True)]

    pages = await _walk(items, ItemFilter(), limit=4)

    assert [len(p) for p in pages] == [4, 4, 4, 4, 4, 3]
    assert [item_id for page in pages for item_id in page] == expected


@pytest.mark.parametrize("limit", [5, 6, 50])
async def test_the_last_page_has_no_next_cursor(db, limit):
    seller = await add_user(db)
    for n in range(5):
        await add_item(db, seller, created_at=T0 + timedelta(seconds=n))
    pages = await _walk(PiccoloItemRepository(db), ItemFilter(), limit)
    assert pages == [pages[0]] and len(pages[0]) == 5


async def test_an_item_added_while_paging_does_not_shift_the_later_pages(db):
    items = PiccoloItemRepository(db)
    seller = await add_user(db)
    added = [await add_item(db, seller, created_at=T0 + timedelta(seconds=n)) for n in range(6)]
    first = await items.browse(ItemFilter(), 3, None)
    await add_item(db, seller, created_at=T0 + timedelta(days=1))
    second = await items.browse(ItemFilter(), 3, first.next_cursor)
    assert [i.id for i in second.items] == [i.id for i in reversed(added[:3])]


async def test_browsing_filters_by_category(db):
    seller = await add_user(db)
    mug = await add_item(db, seller, category="kitchen")
    await add_item(db, seller, category="garden")
    page = await PiccoloItemRepository(db).browse(ItemFilter(category="kitchen"), 20, None)
    assert [i.id for i in page.items] == [mug.id]


async def test_price_bounds_are_inclusive(db):
    seller = await add_user(db)
    by_price = {p: await add_item(db, seller, price_cents=p) for p in (0, 100, 200, 300, 400)}
    page = await PiccoloItemRepository(db).browse(
        ItemFilter(min_price_cents=100, max_price_cents=300), 20, None
    )
    assert {i.id for i in page.items} == {by_price[p].id for p in (100, 200, 300)}


async def test_browsing_filters_by_seller(db):
    alice, bob = await add_user(db), await add_user(db)
    hers = await add_item(db, alice)
    await add_item(db, bob)
    page = await PiccoloItemRepository(db).browse(ItemFilter(seller_id=alice.id), 20, None)
    assert [i.id for i in page.items] == [hers.id]


@pytest.mark.parametrize("seller_id", ["not-a-uuid", "", "' OR 1=1 --"])
async def test_a_malformed_seller_id_filter_matches_nothing(db, seller_id):
    await add_item(db, await add_user(db))
    page = await PiccoloItemRepository(db).browse(ItemFilter(seller_id=seller_id), 20, None)
    assert page.items == [] and page.next_cursor is None


async def test_filters_combine(db):
    alice, bob = await add_user(db), await add_user(db)
    wanted = await add_item(db, alice, category="kitchen", price_cents=500)
    await add_item(db, alice, category="kitchen", price_cents=5000)
    await add_item(db, alice, category="home", price_cents=500)
    await add_item(db, bob, category="kitchen", price_cents=500)
    item_filter = ItemFilter(category="kitchen", max_price_cents=1000, seller_id=alice.id)
    page = await PiccoloItemRepository(db).browse(item_filter, 20, None)
    assert [i.id for i in page.items] == [wanted.id]


async def test_paging_a_filtered_browse_stays_inside_the_filter(db):
    seller = await add_user(db)
    kitchen = set()
    for n in range(10):
        item = await add_item(
            db, seller, category="kitchen" if n % 2 else "home", created_at=T0 + timedelta(seconds=n)
        )
        if n % 2:
            kitchen.add(item.id)
    pages = await _walk(PiccoloItemRepository(db), ItemFilter(category="kitchen"), limit=2)
    visited = [item_id for page in pages for item_id in page]
    assert len(visited) == len(kitchen) and set(visited) == kitchen


async def test_archived_items_are_neither_browsed_nor_found_but_still_readable(db):
    items = PiccoloItemRepository(db)
    seller = await add_user(db)
    kept = await add_item(db, seller, title="Blue mug")
    gone = await add_item(db, seller, title="Red mug")
    await items.update(gone.archived(T0 + timedelta(hours=1)))

    assert [i.id for i in (await items.browse(ItemFilter(), 20, None)).items] == [kept.id]
    assert [i.id for i in (await items.browse(_search("mug"), 20, None)).items] == [kept.id]
    assert (await items.get(gone.id)).status == "archived"


async def test_a_disabled_sellers_items_are_neither_browsed_found_nor_on_sale_until_they_are_enabled(db):
    items, users = PiccoloItemRepository(db), PiccoloUserRepository(db)
    seller, other = await add_user(db), await add_user(db)
    kept = await add_item(db, seller, title="Blue mug")
    theirs = await add_item(db, other, title="Red mug", created_at=T0 + timedelta(hours=1))
    assert (await items.get_on_sale(theirs.id)) == theirs
    await users.set_status(other.id, UserStatus.DISABLED)

    assert [i.id for i in (await items.browse(ItemFilter(), 20, None)).items] == [kept.id]
    assert [i.id for i in (await items.browse(_search("mug"), 20, None)).items] == [kept.id]
    assert (await items.browse(ItemFilter(seller_id=other.id), 20, None)).items == []
    assert await items.get_on_sale(theirs.id) is None
    assert await items.get(theirs.id) == theirs, "hidden, not changed"

    await users.set_status(other.id, UserStatus.ACTIVE)
    assert [i.id for i in (await items.browse(_search("mug"), 20, None)).items] == [theirs.id, kept.id]
    assert await items.get_on_sale(theirs.id) == theirs


async def test_an_archived_or_unknown_item_is_not_on_sale(db):
    items = PiccoloItemRepository(db)
    gone = await add_item(db, await add_user(db))
    await items.update(gone.archived(T0 + timedelta(hours=1)))
    assert await items.get_on_sale(gone.id) is None
    assert await items.get_on_sale("not-an-id") is None


async def test_the_moderation_list_browses_and_searches_archived_and_suspended_items_apart(db):
    items = PiccoloItemRepository(db)
    moderation = SqlItemModeration(db)
    seller = await add_user(db)
    active = await add_item(db, seller, title="Blue mug")
    archived = await add_item(db, seller, title="Red mug")
    suspended = await add_item(db, seller, title="Fake mug")
    await items.update(archived.archived(T0 + timedelta(hours=1)))
    await items.update(dataclasses.replace(suspended, status=ItemStatus.SUSPENDED))
    await moderation.record(suspended.id, T0 + timedelta(hours=1), "counterfeit")

    def ids(page):
        return [(i.id, i.status) for i in page.items]

    for status, item in ((ItemStatus.ARCHIVED, archived), (ItemStatus.SUSPENDED, suspended)):
        assert ids(await items.browse(ItemFilter(status=status), 20, None)) == [(item.id, status)]
        assert ids(await items.browse(_search("mug", status=status), 20, None)) == [(item.id, status)]
    assert ids(await items.browse(ItemFilter(), 20, None)) == [(active.id, ItemStatus.ACTIVE)]
    # A cursor of one status's list is refused by another's.
    for _ in range(2):
        await add_item(db, seller, title="Another mug")
    page = await items.browse(ItemFilter(), 1, None)
    with pytest.raises(InvalidCursor):
        await items.browse(ItemFilter(status=ItemStatus.ARCHIVED), 1, page.next_cursor)


# --- search -----------------------------------------------------------------------------------------------


async def test_a_title_match_ranks_above_a_description_only_match(db):
    seller = await add_user(db)
    # The description match is newer and has the smaller id: only relevance can put the title match first.
    in_title = await add_item(
        db, seller, id="ffffffff-0000-4000-8000-000000000001", title="Blue mug", description="Handmade."
    )
    in_description = await add_item(
        db,
        seller,
        id="00000000-0000-4000-8000-000000000001",
        title="Teapot",
        description="Goes well with a mug.",
        created_at=T0 + timedelta(days=1),
    )
    await add_item(db, seller, title="Kettle", description="Boils water.")
    page = await PiccoloItemRepository(db).browse(_search("mug"), 20, None)
    assert [i.id for i in page.items] == [in_title.id, in_description.id]


# Where the word is: in the title (tier 0), in the category only (1), in the description only (2), nowhere.
_PLACES = ("title", "category", "description", None)


def _placed(n: int, place: str | None) -> dict[str, str]:
    return {
        "title": f"Blue mug {n}" if place == "title" else f"Teapot {n}",
        "category": "mugs and cups" if place == "category" else "kitchen",
        "description": "A mug for tea." if place == "description" else "For tea.",
    }


@pytest.mark.parametrize("walk", [1, 5, 2000])
@pytest.mark.parametrize("max_price_cents", [None, 2_000])
async def test_search_orders_title_then_category_then_description_matches_newest_first_in_each(
    db, monkeypatch, walk, max_price_cents
):
    """On PostgreSQL a search classifies the newest WALK items and reads a tier whole only where they hold less
    than a page of it: 1 (almost every tier read whole), 5 (some tiers walked, some read), 2000 (all walked)
    must give the same order, with a price bound too (applied to what the walk found, not in the walk). SQLite
    orders in one statement."""
    monkeypatch.setattr("market.adapters.db.search.WALK", walk)
    monkeypatch.setattr("market.adapters.db.search.SCAN", 2 * walk)  # a price bound narrows the walk
    seller = await add_user(db)
    rng = random.Random(7)
    added = []
    for n in range(40):
        place = rng.choice(_PLACES)
        price = rng.randrange(100, 4_000)
        item = await add_item(
            db, seller, created_at=T0 + timedelta(minutes=n), price_cents=price, **_placed(n, place)
        )
        if place is not None and (max_price_cents is None or price <= max_price_cents):
            added.append((_PLACES.index(place), item))
    expected = [
        item.id for _, item in sorted(added, key=lambda pair: (pair[0], -pair[1].created_at.timestamp()))
    ]

    pages = await _walk(PiccoloItemRepository(db), _search("mugs", max_price_cents=max_price_cents), limit=3)

    assert [item_id for page in pages for item_id in page] == expected
    assert {tier for tier, _ in added} == {0, 1, 2}  # every tier is there to be ordered


async def test_a_query_of_several_words_ranks_by_where_all_of_them_are(db):
    seller = await add_user(db)
    # Oldest first in the catalog (and ids in the same order), so that only the tiers can put them in this order.
    title = await add_item(db, seller, id="00000000-0000-4000-8000-000000000001", title="Blue mug")
    head = await add_item(
        db,
        seller,
        id="00000000-0000-4000-8000-000000000002",
        title="Blue teapot",
        category="mug",
        created_at=T0 + timedelta(days=1),
    )
    spread = await add_item(
        db,
        seller,
        id="00000000-0000-4000-8000-000000000003",
        title="Blue teapot",
        description="Goes with a mug.",
        created_at=T0 + timedelta(days=2),
    )
    await add_item(db, seller, title="Red mug", created_at=T0 + timedelta(days=3))
    page = await PiccoloItemRepository(db).browse(_search("blue mug"), 20, None)
    assert [i.id for i in page.items] == [title.id, head.id, spread.id]


@pytest.mark.parametrize("query", ["mugs", "MUGS", "mug"])
async def test_search_stems_words_so_mugs_finds_mug(db, query):
    seller = await add_user(db)
    mug = await add_item(db, seller, title="Blue mug")
    await add_item(db, seller, title="Teapot")
    page = await PiccoloItemRepository(db).browse(_search(query), 20, None)
    assert [i.id for i in page.items] == [mug.id]


@pytest.mark.parametrize(
    ("query", "titles"),
    [
        ("a blue mug", ["Blue mug"]),  # "a" is no word to look for: the item without it is found
        ("blue mug and", ["Blue mug"]),
        ("mug OR teapot", []),  # no operator: "or" is a common word, and both others are required
        ("the teapot", ["The teapot"]),
        ("the", []),  # only common words: nothing to look for, on either engine
    ],
)
async def test_common_words_are_not_searched_for_on_either_engine(db, query, titles):
    seller = await add_user(db)
    await add_item(db, seller, title="Blue mug", category="kitchen")
    await add_item(db, seller, title="The teapot", category="kitchen")
    page = await PiccoloItemRepository(db).browse(_search(query), 20, None)
    assert [i.title for i in page.items] == titles


@pytest.mark.parametrize("query", ["İstanbul", "İSTANBUL", "istanbul", "ISTANBUL"])
async def test_search_finds_a_word_with_the_dotted_capital_i_whatever_the_case_on_either_engine(db, query):
    # Python lowers İ to i + a combining dot (U+0307), PostgreSQL's text search to a plain i: the query folds the
    # dot away, as the stored title's words are.
    seller = await add_user(db)
    kebap = await add_item(db, seller, title="İSTANBUL kebap")
    await add_item(db, seller, title="Ankara tea")
    page = await PiccoloItemRepository(db).browse(_search(query), 20, None)
    assert [i.id for i in page.items] == [kebap.id]


async def test_every_word_of_a_query_must_match(db):
    seller = await add_user(db)
    blue = await add_item(db, seller, title="Blue mug")
    await add_item(db, seller, title="Red mug")
    await add_item(db, seller, title="Blue teapot")
    page = await PiccoloItemRepository(db).browse(_search("blue mug"), 20, None)
    assert [i.id for i in page.items] == [blue.id]


async def test_search_finds_words_in_the_category(db):
    seller = await add_user(db)
    item = await add_item(db, seller, title="Trowel", category="garden")
    await add_item(db, seller, title="Mug", category="kitchen")
    page = await PiccoloItemRepository(db).browse(_search("garden"), 20, None)
    assert [i.id for i in page.items] == [item.id]


async def test_search_respects_the_other_filters(db):
    seller = await add_user(db)
    cheap = await add_item(db, seller, title="Cheap mug", price_cents=300)
    await add_item(db, seller, title="Dear mug", price_cents=30_000)
    page = await PiccoloItemRepository(db).browse(_search("mug", max_price_cents=1000), 20, None)
    assert [i.id for i in page.items] == [cheap.id]


async def test_search_results_page_through_every_match_exactly_once(db):
    seller = await add_user(db)
    mugs = {(await add_item(db, seller, title=f"Mug number {n}")).id for n in range(7)}
    await add_item(db, seller, title="Teapot")
    pages = await _walk(PiccoloItemRepository(db), _search("mug"), limit=3)
    visited = [item_id for page in pages for item_id in page]
    assert [len(p) for p in pages] == [3, 3, 1]
    assert len(visited) == 7 and set(visited) == mugs


async def test_a_search_without_matches_is_an_empty_last_page(db):
    await add_item(db, await add_user(db), title="Blue mug")
    page = await PiccoloItemRepository(db).browse(_search("kettle"), 20, None)
    assert page.items == [] and page.next_cursor is None


HOSTILE_QUERIES = [
    "'; DROP TABLE items; --",
    "' OR '1'='1",
    '" OR 1=1',
    '" OR ""="',
    "mug' UNION SELECT * FROM users --",
    "NEAR(",
    "NEAR(mug blue, 2)",
    "mug*",
    "*",
    '"',
    '"mug',
    "mug OR blue",
    "mug AND NOT blue",
    "-mug",
    "!mug & blue | (red",
    "title:mug",
    "^mug",
    "{mug}",
    "mug:*",
    "\\",
    "%_%",
    "$1",
    "{}",
    "mug\x00blue",
    "\x00",
    "☕ 🙂 ü",
    "-" * 33,  # once "tsquery stack too small" on PostgreSQL: each dash was a NOT
    "-" * 5_000,
    "!" * 33,
    "a" + " -a" * 40,
    "a-" * 500,
    "(" * 100 + "mug" + ")" * 100,
    "NEAR(" * 50,
    '"' * 101,
]


async def test_sql_and_fts_syntax_in_a_query_gives_a_normal_page(db):
    items = PiccoloItemRepository(db)
    seller = await add_user(db)
    await add_item(db, seller, title="Blue mug")
    await add_item(db, seller, title="Red teapot")
    failures = {}
    for query in HOSTILE_QUERIES:
        try:
            page = await items.browse(_search(query), 20, None)
        except Exception as exc:
            failures[query] = repr(exc)
        else:
            if len(page.items) > 2 or page.next_cursor is not None:
                failures[query] = repr(page)
    assert failures == {}
    assert await count(db, "items") == 2
    assert await count(db, "users") == 1


async def test_a_ten_kilobyte_query_gives_a_normal_page(db):
    rng = random.Random(7)
    queries = {
        "one word": ("m" * 10_240, False),
        "many words": ("mug " * 2_560, True),
        "noise": ("".join(rng.choice(string.printable + "ü☕\"'*") for _ in range(10_240)), False),
    }
    seller = await add_user(db)
    mug = await add_item(db, seller, title="Blue mug")
    for kind, (query, finds_the_mug) in queries.items():
        assert len(query.encode()) >= 10_240
        page = await PiccoloItemRepository(db).browse(_search(query), 20, None)
        assert [i.id for i in page.items] == ([mug.id] if finds_the_mug else []), kind


# --- cursors ----------------------------------------------------------------------------------------------

MALFORMED_CURSORS = [
    "not-a-cursor",
    "!!!",
    "e30",  # {}
    base64.urlsafe_b64encode(b"[1, 2]").decode(),
    base64.urlsafe_b64encode(b'{"f": "000000000000", "t": "2026-01-01T00:00:00+00:00", "id": "x"}').decode(),
    base64.urlsafe_b64encode(b"\xff\xfe\xfd").decode(),
    "A" * 5000,
    base64.urlsafe_b64encode(b"[" * 5_000 + b"]" * 5_000).decode(),  # once a RecursionError
    base64.urlsafe_b64encode(b'{"s": ' + b"[" * 3_000 + b"]" * 3_000 + b"}").decode(),
]


async def _not_accepted(items: PiccoloItemRepository, item_filter: ItemFilter, cursor: str) -> str | None:
    """None when the cursor is refused with InvalidCursor, else what happened instead."""
    try:
        page = await items.browse(item_filter, 1, cursor)
    except InvalidCursor:
        return None
    except Exception as exc:
        return repr(exc)
    return f"accepted: {page!r}"


async def test_an_empty_cursor_means_the_first_page(db):
    items = PiccoloItemRepository(db)
    await add_item(db, await add_user(db))
    for query in (None, "mug"):
        first = await items.browse(ItemFilter(query=query), 10, None)
        assert await items.browse(ItemFilter(query=query), 10, "") == first


async def test_a_malformed_cursor_raises_invalid_cursor(db):
    items = PiccoloItemRepository(db)
    await add_item(db, await add_user(db))
    failures = {
        (query, cursor[:40]): outcome
        for query in (None, "mug")
        for cursor in MALFORMED_CURSORS
        if (outcome := await _not_accepted(items, ItemFilter(query=query), cursor))
    }
    assert failures == {}


async def _first_cursor(items: PiccoloItemRepository, item_filter: ItemFilter) -> str:
    page = await items.browse(item_filter, 1, None)
    assert page.next_cursor is not None
    return page.next_cursor


async def test_a_cursor_from_another_filter_raises_invalid_cursor(db):
    items = PiccoloItemRepository(db)
    seller = await add_user(db)
    for n in range(3):
        await add_item(db, seller, title="Blue mug", category="kitchen", created_at=T0 + timedelta(seconds=n))
    pairs = [
        (ItemFilter(category="kitchen"), ItemFilter(category="garden")),
        (ItemFilter(category="kitchen"), ItemFilter()),
        (ItemFilter(), ItemFilter(min_price_cents=1)),
        (ItemFilter(), ItemFilter(seller_id=seller.id)),
        (ItemFilter(), ItemFilter(query="mug")),
        (ItemFilter(query="mug"), ItemFilter(query="blue")),
        (ItemFilter(query="mug"), ItemFilter()),
    ]
    failures = {}
    for issued_for, used_for in pairs:
        cursor = await _first_cursor(items, issued_for)
        await items.browse(issued_for, 1, cursor)  # good for the filter it was issued for
        if outcome := await _not_accepted(items, used_for, cursor):
            failures[(issued_for, used_for)] = outcome
    assert failures == {}


async def test_a_tampered_browse_cursor_raises_invalid_cursor(db):
    items = PiccoloItemRepository(db)
    seller = await add_user(db)
    for n in range(3):
        await add_item(db, seller, created_at=T0 + timedelta(seconds=n))
    cursor = await _first_cursor(items, ItemFilter())
    tampering = [
        {"t": "yesterday"},
        {"t": 12},
        {"t": None},
        {"id": 7},
        {"id": None},
        {"id": "not-a-uuid"},
        {"id": "'; DROP TABLE items; --"},
        {"s": "items:0"},
        {"t": "0001-01-01T00:00:00+14:00"},  # before datetime.min in UTC
        {"t": "9999-12-31T23:59:59-14:00"},  # after datetime.max in UTC
    ]
    failures = {
        repr(changes): outcome
        for changes in tampering
        if (outcome := await _not_accepted(items, ItemFilter(), _tampered(cursor, **changes)))
    }
    assert failures == {}
    assert await count(db, "items") == 3


async def test_a_tampered_search_cursor_raises_invalid_cursor(db):
    items = PiccoloItemRepository(db)
    seller = await add_user(db)
    for _ in range(3):
        await add_item(db, seller, title="Blue mug")
    cursor = await _first_cursor(items, _search("mug"))
    tampering = [{"o": -1}, {"o": "1"}, {"o": 1.5}, {"o": 10**9}, {"o": None}, {"s": "items:0"}]
    failures = {
        repr(changes): outcome
        for changes in tampering
        if (outcome := await _not_accepted(items, _search("mug"), _tampered(cursor, **changes)))
    }
    assert failures == {}


@pytest.mark.parametrize(
    ("query", "title"),
    [
        ("creme brulee", "Crème brûlée set"),
        ("CRÈME", "Crème brûlée set"),
        ("echarpe", "ÉCHARPE en laine"),
        ("écharpe", "Echarpe rouge"),
        ("cafe naive", "Naïve café"),
    ],
)
async def test_search_ignores_accents_on_either_engine(db, query, title):
    # SQLite's FTS5 index (unicode61) always removed diacritics; PostgreSQL's `english` configuration kept them,
    # so `creme` found nothing there (m0015: the unaccent dictionary in front of the stemmer).
    seller = await add_user(db)
    wanted = await add_item(db, seller, title=title)
    await add_item(db, seller, title="Teapot")
    page = await PiccoloItemRepository(db).browse(_search(query), 20, None)
    assert [i.id for i in page.items] == [wanted.id]


@pytest.mark.parametrize("query", ["ΟΔΟΣ", "οδος", "οδοσ"])
async def test_search_finds_a_greek_word_whatever_its_final_sigma_on_either_engine(db, query):
    # PostgreSQL lowered a stored "ΟΔΟΣ" to `οδοσ` and kept a query's (or a lower-case title's) final ς as it was.
    seller = await add_user(db)
    upper = await add_item(db, seller, title="ΟΔΟΣ map", created_at=T0 + timedelta(days=1))
    lower = await add_item(db, seller, title="οδος guide", created_at=T0)
    await add_item(db, seller, title="Teapot")
    page = await PiccoloItemRepository(db).browse(_search(query), 20, None)
    assert [i.id for i in page.items] == [upper.id, lower.id]
