"""Catalog use cases: list, view and browse items (changing and archiving one: moderation.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from market.domain.catalog import Item, ItemFilter, new_item
from market.domain.errors import NotFound
from market.domain.events import ItemListed, ItemViewed, SearchPerformed
from market.domain.redaction import filtered_text
from market.domain.users import User

from .ports import Clock, EventPublisher, IdGenerator, Page, ReadRepositories, UnitOfWorkFactory

_NO_SUCH_ITEM = "There is no such item."


async def list_item(
    seller: User,
    fields: dict[str, Any],
    *,
    uow: UnitOfWorkFactory,
    ids: IdGenerator,
    clock: Clock,
) -> Item:
    item = new_item(item_id=ids.new_id(), seller=seller, fields=fields, now=clock.now())
    async with uow() as work:
        await work.items.add(item)
        await work.collect([ItemListed(item.id, item.seller_id)], item.created_at)
        await work.commit()
    return item


async def view_item(
    item_id: str, *, counted: bool = True, repos: ReadRepositories, clock: Clock, events: EventPublisher
) -> Item:
    """One item on sale (active, its seller not disabled), counted as a view unless `counted` is false (a HEAD:
    an uptime or link check)."""
    item = await repos.items.get_on_sale(item_id)
    if item is None:
        raise NotFound(_NO_SUCH_ITEM)
    if not counted:
        return item
    viewed = [ItemViewed(item.id, item.seller_id)]
    await repos.analytics.record(viewed, clock.now())
    events.publish(viewed)
    return item


async def browse_items(
    item_filter: ItemFilter,
    limit: int,
    cursor: str | None,
    *,
    counted: bool = True,
    repos: ReadRepositories,
    clock: Clock,
    events: EventPublisher,
) -> Page[Item]:
    """Active items matching the filter. A filter with a query is a search and is counted as one
    (first page only: paging through results is not a new search; nor when `counted` is false: a HEAD).
    Its result count is the first page's, which is what decides between "results" and "no results"."""
    page = await repos.items.browse(item_filter, limit, cursor)
    if counted and item_filter.query is not None and not cursor:
        # The query is kept (analytics, reports, the session timeline) without what a person should not leave there.
        searched = [SearchPerformed(filtered_text(item_filter.query), len(page.items))]
        await repos.analytics.record(searched, clock.now())
        events.publish(searched)
    return page


# --- Bound: what controllers receive (ports bound in bootstrap.bind_use_cases) ---------------------------------

BrowseItems = Callable[..., Awaitable[Page[Item]]]
"""(filter, limit, cursor, *, counted=True)"""
ViewItem = Callable[..., Awaitable[Item]]
"""(item_id, *, counted=True)"""
ListItem = Callable[[User, dict[str, Any]], Awaitable[Item]]
