"""Browsing and full-text search over active items, on both engines, with opaque cursors.

Browse pages use keyset pagination on (created_at, id), newest first. Search pages are ordered by relevance
(PostgreSQL `ts_rank` over a weighted tsvector; SQLite FTS5 `bm25`) and page by offset: relevance has no
stable key to seek on, and nobody pages deep into search results.
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

from .cursors import decode_cursor, decode_keyset_cursor, encode_cursor, encode_keyset_cursor
from .database import Database
from .rows import MODERATION_COLUMNS, item_from_row, parse_id
from .tables import ItemRow, select_list

_COLUMNS = select_list(ItemRow, "i", without=MODERATION_COLUMNS)
_WORD = re.compile(r"\w+", re.UNICODE)
# Literals, not parameters: the partial indexes (items_active_*) are chosen only for `status = 'active'`. A
# suspended item is stored archived with `suspended_at` set (rows.item_values).
_STATUS_WHERE = {
    ItemStatus.ACTIVE: "i.status = 'active'",
    ItemStatus.ARCHIVED: "i.status = 'archived' AND i.suspended_at IS NULL",
    ItemStatus.SUSPENDED: "i.status = 'archived' AND i.suspended_at IS NOT NULL",
}
MAX_SEARCH_OFFSET = 10_000  # deeper than any person pages; bounds the work one request can ask for


async def browse_items(db: Database, item_filter: ItemFilter, limit: int, cursor: str | None) -> Page[Item]:
    scope = _cursor_scope(item_filter)
    where = [_STATUS_WHERE[item_filter.status]]
    args: list[Any] = []
    if item_filter.category is not None:
        where.append("i.category = {}")
        args.append(item_filter.category)
    if item_filter.min_price_cents is not None:
        where.append("i.price_cents >= {}")
        args.append(item_filter.min_price_cents)
    if item_filter.max_price_cents is not None:
        where.append("i.price_cents <= {}")
        args.append(item_filter.max_price_cents)
    if item_filter.seller_id is not None:
        seller_id = parse_id(item_filter.seller_id)
        if seller_id is None:  # not an id at all: no seller has it
            return Page(items=[], next_cursor=None)
        where.append("i.seller_id = {}")
        args.append(seller_id)

    if item_filter.query is None:
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
        rows = await _search(db, item_filter.query, where, args, limit + 1, offset)
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


async def _search(
    db: Database, query: str, where: list[str], args: list[Any], limit: int, offset: int
) -> list[Any] | None:
    terms = search_terms(query)
    if not terms:
        return None
    if db.is_postgres:
        # plainto_tsquery over bare words: no operator syntax reaches PostgreSQL's parser. (websearch_to_tsquery
        # raised "tsquery stack too small" for 33 dashes: each one was a NOT.) Every match is ranked, so the per-match cost decides the latency of broad queries (a word in a
        # quarter of the catalog): the inner query ranks narrow (id, rank) rows with `ts_rank`, about half
        # the cost of `ts_rank_cd`, and only the page's rows are then read in full.
        sql = (
            f"SELECT {_COLUMNS} FROM ("
            " SELECT i.id, ts_rank(i.search, q) AS rank"
            " FROM items i, plainto_tsquery('english', {}) q"
            f" WHERE i.search @@ q AND {' AND '.join(where)}"
            " ORDER BY rank DESC, i.id LIMIT {} OFFSET {}"
            ") AS ranked JOIN items i ON i.id = ranked.id ORDER BY ranked.rank DESC, ranked.id"
        )
        return await db.fetch(sql, " ".join(terms), *args, limit, offset)
    sql = (
        f"SELECT {_COLUMNS} FROM items_fts f JOIN items i ON i.rowid = f.rowid"
        f" WHERE items_fts MATCH {{}} AND {' AND '.join(where)}"
        " ORDER BY bm25(items_fts, 10.0, 5.0, 2.0), i.id LIMIT {} OFFSET {}"
    )
    return await db.fetch(sql, fts5_match_expression(terms), *args, limit, offset)


def search_terms(query: str) -> list[str]:
    """The distinct words of a query (letters, digits, underscore), in order, at most MAX_QUERY_TERMS: the only
    part of user text that reaches either engine's query parser, so no input is syntax to it."""
    return list(dict.fromkeys(_WORD.findall(query)))[:MAX_QUERY_TERMS]


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
