"""Admin tools: moderation of any item (active, archived, suspended), with a reason, audited."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from litestar import Controller, patch
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from market.application.moderation import SetItemStatus
from market.domain.admin import MAX_REASON
from market.domain.catalog import ItemStatus
from market.domain.users import Role, User

from .auth import requires
from .items import ItemOut
from .openapi import BEARER, problems
from .query import strict_request
from .validation import NOT_BLANK


class Moderation(msgspec.Struct, forbid_unknown_fields=True):
    """`suspended` hides the item like `archived`, and its seller cannot bring it back; `reason` is kept on
    the item and in the audit trail."""

    status: Literal["active", "archived", "suspended"]
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_REASON, pattern=NOT_BLANK)]


class AdminItemsController(Controller):
    path = "/admin/items"
    tags = ["admin"]
    guards = [requires(Role.ADMIN)]
    security = BEARER
    before_request = strict_request

    @patch("/{item_id:str}", operation_id="adminModerateItem", responses=problems(400, 401, 403, 404, 422))
    async def moderate(
        self,
        item_id: FromPath[str],
        data: JSONBody[Moderation],
        user: NamedDependency[User],
        set_item_status: NamedDependency[SetItemStatus],
    ) -> ItemOut:
        """Set any item's `status` (`active`, `archived`, `suspended`) with a `reason`; appends an audit entry
        in the same transaction."""
        item = await set_item_status(user, item_id, ItemStatus(data.status), data.reason.strip())
        return ItemOut.of(item)
