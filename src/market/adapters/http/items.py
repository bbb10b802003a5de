"""Catalog: browse and search, view, list, change and archive items."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Request, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, Parameter

from market.application.catalog import BrowseItems, ListItem, ViewItem
from market.application.moderation import ArchiveItem, EditItem
from market.domain.catalog import (
    MAX_CATEGORY,
    MAX_DESCRIPTION,
    MAX_STOCK,
    MAX_TITLE,
    SELLER_WRITABLE,
    Item,
    ItemFilter,
    ItemStatus,
    normalise_query,
)
from market.domain.money import CURRENCIES, MAX_CENTS
from market.domain.users import Role, User

from .auth import requires
from .openapi import BEARER, problems
from .validation import NO_NUL, NOT_BLANK

Currency = Literal[tuple(sorted(CURRENCIES))]  # type: ignore[valid-type]  # an enum in the schema
Title = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TITLE, pattern=NOT_BLANK)]
Description = Annotated[str, msgspec.Meta(max_length=MAX_DESCRIPTION, pattern=NO_NUL)]
PriceCents = Annotated[int, msgspec.Meta(ge=0, le=MAX_CENTS, description="Minor units (cents).")]
Stock = Annotated[int, msgspec.Meta(ge=0, le=MAX_STOCK)]
Category = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_CATEGORY, pattern=NOT_BLANK)]


class NewItem(msgspec.Struct, forbid_unknown_fields=True):
    title: Title
    price_cents: PriceCents
    currency: Currency
    stock: Stock
    category: Category
    description: Description = ""


class ItemChanges(msgspec.Struct, forbid_unknown_fields=True):
    """Only the fields sent are changed. `status`: the owning seller archives (`archived`) or restores
    (`active`) their item, but cannot touch one the marketplace suspended. `seller_id` and ids are not
    writable."""

    title: Title | msgspec.UnsetType = msgspec.UNSET
    description: Description | msgspec.UnsetType = msgspec.UNSET
    price_cents: PriceCents | msgspec.UnsetType = msgspec.UNSET
    currency: Currency | msgspec.UnsetType = msgspec.UNSET
    stock: Stock | msgspec.UnsetType = msgspec.UNSET
    category: Category | msgspec.UnsetType = msgspec.UNSET
    status: Literal["active", "archived"] | msgspec.UnsetType = msgspec.UNSET


class ItemOut(msgspec.Struct):
    id: str
    seller_id: str
    title: str
    description: str
    price_cents: int
    currency: str
    stock: int
    category: str
    status: Literal["active", "archived", "suspended"]
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, item: Item) -> ItemOut:
        return cls(
            item.id,
            item.seller_id,
            item.title,
            item.description,
            item.price.cents,
            item.price.currency,
            item.stock,
            item.category,
            _STATUS_VALUES[item.status],
            item.created_at,
            item.updated_at,
        )


_STATUS_VALUES = {status: status.value for status in ItemStatus}
# `.value` is an enum property (a descriptor call per item of every page); the mapping is a dict lookup.


class ItemPage(msgspec.Struct):
    items: list[ItemOut]
    next_cursor: str | None


def _fields(struct: msgspec.Struct) -> dict[str, Any]:
    return {
        name: value
        for name in SELLER_WRITABLE
        if (value := getattr(struct, name, msgspec.UNSET)) is not msgspec.UNSET
    }


_CENTS_BOUNDS = {"minimum": 0, "maximum": MAX_CENTS}


def _counted(request: Request[Any, Any, Any]) -> bool:
    """Whether the request counts as a view or a search: not a HEAD (answered as a GET by the server span
    middleware), which is an uptime check or a link checker, not a shopper."""
    return not request.scope.get("state", {}).get("head", False)


class ItemController(Controller):
    path = "/items"
    tags = ["catalog"]

    @get(operation_id="browseItems", responses=problems(400))
    async def browse(
        self,
        request: Request[Any, Any, Any],
        browse_items: NamedDependency[BrowseItems],
        q: str | None = Parameter(
            default=None, pattern=NO_NUL, description="Full-text search; results in relevance order."
        ),
        category: str | None = Parameter(default=None, max_length=MAX_CATEGORY, pattern=NO_NUL),
        # `schema_extra`: Litestar leaves a bound of 0 out of an optional parameter's schema.
        min_price_cents: int | None = Parameter(default=None, ge=0, le=MAX_CENTS, schema_extra=_CENTS_BOUNDS),
        max_price_cents: int | None = Parameter(default=None, ge=0, le=MAX_CENTS, schema_extra=_CENTS_BOUNDS),
        seller_id: str | None = Parameter(default=None),
        limit: int = Parameter(default=20, ge=1, le=100),
        cursor: str | None = Parameter(
            default=None, description="`next_cursor` of the previous page; empty or absent for the first."
        ),
    ) -> ItemPage:
        """Browse active items, newest first, or search them with `q`."""
        item_filter = ItemFilter(
            query=normalise_query(q),
            category=category,
            min_price_cents=min_price_cents,
            max_price_cents=max_price_cents,
            seller_id=seller_id,
        )
        page = await browse_items(item_filter, limit, cursor or None, counted=_counted(request))
        return ItemPage(items=[ItemOut.of(i) for i in page.items], next_cursor=page.next_cursor)

    @get("/{item_id:str}", operation_id="getItem", responses=problems(404))
    async def get_item(
        self, request: Request[Any, Any, Any], item_id: FromPath[str], view_item: NamedDependency[ViewItem]
    ) -> ItemOut:
        """One active item."""
        return ItemOut.of(await view_item(item_id, counted=_counted(request)))

    @post(
        operation_id="createItem",
        status_code=201,
        guards=[requires(Role.SELLER)],
        security=BEARER,
        responses=problems(400, 401, 403, 422),
    )
    async def create(
        self, data: JSONBody[NewItem], user: NamedDependency[User], list_item: NamedDependency[ListItem]
    ) -> ItemOut:
        """List a new item (sellers)."""
        return ItemOut.of(await list_item(user, _fields(data)))

    @patch(
        "/{item_id:str}",
        operation_id="updateItem",
        guards=[requires(Role.SELLER, Role.ADMIN)],
        security=BEARER,
        responses=problems(400, 401, 403, 404, 422),
    )
    async def update(
        self,
        item_id: FromPath[str],
        data: JSONBody[ItemChanges],
        user: NamedDependency[User],
        edit_item: NamedDependency[EditItem],
    ) -> ItemOut:
        """Change some of an item's fields (its seller, or an admin). `status` first: an archived item can be
        restored (`active`) and changed in one request; a suspended one only by an admin
        (`PATCH /admin/items/{item_id}`)."""
        status = ItemStatus(data.status) if data.status is not msgspec.UNSET else None
        return ItemOut.of(await edit_item(user, item_id, status, _fields(data)))

    @delete(
        "/{item_id:str}",
        operation_id="archiveItem",
        guards=[requires(Role.SELLER, Role.ADMIN)],
        security=BEARER,
        responses=problems(401, 403, 404),
    )
    async def archive(
        self,
        item_id: FromPath[str],
        user: NamedDependency[User],
        archive_item: NamedDependency[ArchiveItem],
    ) -> None:
        """Archive an item (its seller, or an admin). It disappears from browsing; orders keep it."""
        await archive_item(user, item_id)
