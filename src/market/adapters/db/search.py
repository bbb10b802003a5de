"""Browsing and full-text search over active items, on both engines, with opaque cursors.

Browse pages use keyset pagination on (created_at, id), newest first. Search pages are in relevance order, the
same on both engines: by tier, items with every word of the query in their title first, then those with every
word in their title or category, then the rest (words in the description too); newest first within a tier.
They page by offset (nobody pages deep into search results).

Why tiers and not a score such as `ts_rank`: a score is known only after every match has been read, and a word in
a quarter of a million-item catalog is 250 000 rows to visit for every first page (0.4 s; benchmarks/README.md,
search_latency.py). Tiers in recency order need not read every match: on PostgreSQL a search first sorts the
newest WALK items into tiers (one index scan in recency order), which holds a page of any word that is not rare;
a tier with less than a page there is rare, and is read whole through its own GIN index (m0012). SQLite orders
in one statement (FTS5 column filters name the tiers).
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from functools import lru_cache
from typing import Any

from market.application.ports import Page
from market.domain.catalog import MAX_QUERY_TERMS, Item, ItemFilter, ItemStatus
from market.domain.errors import InvalidCursor
from market.domain.validation import parse_id

from .cursors import decode_cursor, decode_keyset_cursor, encode_cursor, encode_keyset_cursor
from .database import Database
from .rows import MODERATION_COLUMNS, item_from_row, on_sale
from .tables import ItemRow, select_list

_COLUMNS = select_list(ItemRow, "i", without=MODERATION_COLUMNS)
_WORD = re.compile(r"\w+", re.UNICODE)
# Literals, not parameters: the partial indexes (items_active_*) are chosen only for `status = 'active'`. A
# suspended item is stored archived with `suspended_at` set (rows.item_values).
_STATUS_WHERE = {
    ItemStatus.ACTIVE: on_sale("i"),
    ItemStatus.ARCHIVED: "i.status = 'archived' AND i.suspended_at IS NULL",
    ItemStatus.SUSPENDED: "i.status = 'archived' AND i.suspended_at IS NOT NULL",
}
MAX_SEARCH_OFFSET = 10_000  # deeper than any person pages; bounds the work one request can ask for


async def browse_items(db: Database, item_filter: ItemFilter, limit: int, cursor: str | None) -> Page[Item]:
    scope = _cursor_scope(item_filter)
    # Filters a recency index serves (status; category or seller: items_*_recent_idx), then the price bounds,
    # which none does: a search's walk of the newest items takes the first kind only (see `_walk_sql`).
    where = [_STATUS_WHERE[item_filter.status]]
    args: list[Any] = []
    if item_filter.category is not None:
        where.append("i.category = {}")
        args.append(item_filter.category)
    if item_filter.seller_id is not None:
        seller_id = parse_id(item_filter.seller_id)
        if seller_id is None:  # not an id at all: no seller has it
            return Page(items=[], next_cursor=None)
        where.append("i.seller_id = {}")
        args.append(seller_id)
    prices: list[str] = []
    price_args: list[Any] = []
    if item_filter.min_price_cents is not None:
        prices.append("i.price_cents >= {}")
        price_args.append(item_filter.min_price_cents)
    if item_filter.max_price_cents is not None:
        prices.append("i.price_cents <= {}")
        price_args.append(item_filter.max_price_cents)

    if item_filter.query is None:
        where += prices
        args += price_args
        position = decode_keyset_cursor(cursor, scope)
        if position is not None:
            where.append("(i.created_at, i.id) < ({}, {})")
            args += list(position)
        sql = (
            f"SELECT {_COLUMNS} FROM items i WHERE {' AND '.join(where)}"
            " ORDER BY i.created_at DESC, i.id DESC LIMIT {}"
        )
        rows = await db.fetch(sql, *args, limit + 1)
    else:
        offset = _search_offset(cursor, scope)
        filters = _Filters(where, args, prices, price_args)
        rows = await _search(db, item_filter.query, filters, limit + 1, offset)
        if rows is None:
            return Page(items=[], next_cursor=None)

    items = [item_from_row(row) for row in rows[:limit]]
    if item_filter.status is ItemStatus.SUSPENDED:  # stored archived, with `suspended_at`
        items = [dataclasses.replace(item, status=ItemStatus.SUSPENDED) for item in items]
    next_cursor = None
    if len(rows) > limit:
        last = items[-1]
        if item_filter.query is None:
            next_cursor = encode_keyset_cursor(scope, last.created_at, last.id)
        elif (offset + limit) < MAX_SEARCH_OFFSET:
            next_cursor = encode_cursor(scope, {"o": offset + limit})
    return Page(items=items, next_cursor=next_cursor)


WALK = 2000
"""Newest items (with the other filters) a search classifies by tier before it reads any tier's whole match set:
a tier with a page of matches among them is served from them; a tier with fewer is rare enough to read whole
through its own GIN index (m0012)."""
SCAN = 10 * WALK
"""With a price bound (no index orders by price and recency) the walk reads at most this many of the newest items
to find WALK within the bounds: a narrow bound would otherwise make it read the whole catalog."""

# Each tier's condition on an item `i` (`q`: the query), excluding the tiers before it.
_QUERY = "plainto_tsquery('market_search', translate({}, 'ς', 'σ'))"
"""The search's words as a tsquery, as the stored tsvectors are made (m0015): accents off, a final sigma a sigma."""

_TIERS = (
    "i.search_title @@ q",
    "i.search_head @@ q AND NOT i.search_title @@ q",
    "i.search @@ q AND NOT i.search_head @@ q",
)


@dataclasses.dataclass(frozen=True, slots=True)
class _Filters:
    """A search's other filters as SQL over `i` with `{}` placeholders, and their arguments: those a recency
    index serves, and the price bounds."""

    indexed: list[str]
    indexed_args: list[Any]
    prices: list[str]
    price_args: list[Any]

    def sql(self) -> str:
        return " AND ".join(self.indexed + self.prices)

    def args(self) -> list[Any]:
        return self.indexed_args + self.price_args


async def _search(db: Database, query: str, filters: _Filters, limit: int, offset: int) -> list[Any] | None:
    """The items at [offset, offset + limit) of the search's order."""
    terms = search_terms(query)
    if not terms:
        return None
    if not db.is_postgres:
        sql = (
            f"SELECT {_COLUMNS} FROM items_fts f JOIN items i ON i.rowid = f.rowid"
            f" WHERE items_fts MATCH {{}} AND {filters.sql()}"
            " ORDER BY CASE"
            " WHEN i.rowid IN (SELECT rowid FROM items_fts WHERE items_fts MATCH {}) THEN 0"
            " WHEN i.rowid IN (SELECT rowid FROM items_fts WHERE items_fts MATCH {}) THEN 1 ELSE 2 END,"
            " i.created_at DESC, i.id DESC LIMIT {} OFFSET {}"
        )
        everywhere = fts5_match_expression(terms)
        title, head = (f"{{{columns}}} : ({everywhere})" for columns in ("title", "title category"))
        return await db.fetch(sql, everywhere, *filters.args(), title, head, limit, offset)
    # plainto_tsquery over bare words: no operator syntax reaches PostgreSQL's parser. (websearch_to_tsquery
    # raised "tsquery stack too small" for 33 dashes: each one was a NOT.)
    text = " ".join(terms)
    wanted = offset + limit
    bounded = [SCAN, *filters.price_args] if filters.prices else []
    walked = await db.fetch(_walk_sql(filters), *filters.indexed_args, *bounded, WALK, text, wanted)
    newest: list[list[Any]] = [[] for _ in _TIERS]
    in_walk = [0 for _ in _TIERS]  # each tier's matches among the newest WALK items
    for row in walked:
        newest[row["tier"]].append(row)
        in_walk[row["tier"]] = row["in_walk"]
    rows: list[Any] = []
    for tier, condition in enumerate(_TIERS):
        needed = wanted - len(rows)
        if needed <= 0:
            break
        if in_walk[tier] >= needed:  # the tier's newest `needed` are all among the newest WALK items
            rows += newest[tier][:needed]
        else:
            rows += await db.fetch(_tier_sql(condition, filters), text, *filters.args(), needed)
    return rows[offset:wanted]


def _walk_sql(filters: _Filters) -> str:
    """The newest WALK items that pass the filters (an index scan in recency order; with a price bound, among the
    newest SCAN that pass the others), each match's tier, the first N of each tier (N: the last parameter) and how
    many each tier has there (`in_walk`). Parameters: the indexed filters', [SCAN, the price bounds'], WALK, the
    query, N."""
    columns = "i.id, i.created_at, i.price_cents, i.search, i.search_head, i.search_title"
    newest = f"SELECT {columns} FROM items i WHERE {' AND '.join(filters.indexed)} ORDER BY i.created_at DESC, i.id DESC"
    if filters.prices:
        newest = (
            f"SELECT {columns} FROM ({newest} LIMIT {{}}) i WHERE {' AND '.join(filters.prices)}"
            " ORDER BY i.created_at DESC, i.id DESC"
        )
    return (
        f"SELECT {_COLUMNS}, w.tier, w.in_walk FROM ("
        " SELECT m.id, m.tier, count(*) OVER (PARTITION BY m.tier) AS in_walk,"
        "  row_number() OVER (PARTITION BY m.tier ORDER BY m.created_at DESC, m.id DESC) AS place"
        " FROM (SELECT i.id, i.created_at,"
        f"  CASE WHEN {_TIERS[0]} THEN 0 WHEN i.search_head @@ q THEN 1 ELSE 2 END AS tier"
        f"  FROM ({newest} LIMIT {{}}) i, {_QUERY} q WHERE i.search @@ q) m"
        ") w JOIN items i ON i.id = w.id WHERE w.place <= {} ORDER BY w.tier, i.created_at DESC, i.id DESC"
    )


def _tier_sql(condition: str, filters: _Filters) -> str:
    """A tier's first N items (N: the last parameter), newest first, from all of its matches. `OFFSET 0` keeps the
    matches a set of their own: planned with the ORDER BY and LIMIT, they were read by walking the recency index
    with a filter (the planner takes a word missing from the statistics for 0.5 % of rows), every row of the
    catalog for a word in no title: 71-155 ms at 100 000 items."""
    return (
        f"SELECT * FROM (SELECT {_COLUMNS} FROM items i, {_QUERY} q"
        f" WHERE {condition} AND {filters.sql()} OFFSET 0) i ORDER BY i.created_at DESC, i.id DESC LIMIT {{}}"
    )


COMMON_WORDS = frozenset(
    (
        "i me my myself we our ours ourselves you your yours yourself yourselves he him his himself she her "
        "hers herself it its itself they them their theirs themselves what which who whom this that these "
        "those am is are was were be been being have has had having do does did doing a an the and but if or "
        "because as until while of at by for with about against between into through during before after "
        "above below to from up down in out on off over under again further then once here there when where "
        "why how all any both each few more most other some such no nor not only own same so than too very s "
        "t can will just don should now "
    ).split()
)
"""PostgreSQL's English stop words (tsearch_data/english.stop), which its `english` configuration leaves out of
both documents and queries. They are left out of every query here so that SQLite, whose FTS5 index keeps them,
gives the same answers: `a blue mug` finds "Blue mug" on both engines, and `the` alone finds nothing on either."""


def search_terms(query: str) -> list[str]:
    """The distinct words of a query (letters, digits, underscore) but COMMON_WORDS, in order, at most
    MAX_QUERY_TERMS: the only part of user text that reaches either engine's query parser, so no input is syntax
    to it."""
    words = dict.fromkeys(w for w in _WORD.findall(query) if w.lower() not in COMMON_WORDS)
    return list(words)[:MAX_QUERY_TERMS]


def fts5_match_expression(terms: list[str]) -> str:
    """Every term quoted (FTS5 syntax in user input is inert; a term has no `"`), all required."""
    return " ".join(f'"{term}"' for term in terms)


@lru_cache(maxsize=256)  # the same few filters (the front page above all) are paged again and again
def _cursor_scope(item_filter: ItemFilter) -> str:
    """Binds a cursor to its filter: one issued for another filter (or for browsing) is refused."""
    raw = repr(
        (
            item_filter.query,
            item_filter.category,
            item_filter.min_price_cents,
            item_filter.max_price_cents,
            item_filter.seller_id,
            # Browsing active items keeps the scope it always had.
            *(() if item_filter.status is ItemStatus.ACTIVE else (item_filter.status.value,)),
        )
    )
    return "items:" + hashlib.blake2s(raw.encode(), digest_size=6).hexdigest()


def _search_offset(cursor: str | None, scope: str) -> int:
    position = decode_cursor(cursor, scope)
    if position is None:
        return 0
    offset = position.get("o")
    if not isinstance(offset, int) or isinstance(offset, bool) or not 0 <= offset <= MAX_SEARCH_OFFSET:
        raise InvalidCursor()
    return offset
