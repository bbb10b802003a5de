"""Admin tools: the people list, changing an account's role or status, and the audit trail."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec
from litestar import Controller, get, patch
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, Parameter, QueryParameter

from market.application.admin import ChangeAccount, FindAudit, FindUsers
from market.domain.admin import MAX_QUERY, AuditAction, AuditEntry, AuditFilter, UserFilter
from market.domain.users import Role, User, UserStatus

from .auth import requires
from .openapi import BEARER, problems
from .query import bounds_of, strict_request
from .validation import NO_NUL

RoleName = Literal["buyer", "seller", "admin"]
StatusName = Literal["active", "disabled"]
ActionName = Literal[tuple(action.value for action in AuditAction)]  # type: ignore[valid-type]
_BOUND_HELP = "RFC 3339 timestamp with a time zone, or a date (its first instant in UTC)."


class AdminUserOut(msgspec.Struct):
    id: str
    email: str
    display_name: str
    role: RoleName
    status: StatusName
    created_at: datetime
    last_login_at: datetime | None

    @classmethod
    def of(cls, user: User) -> AdminUserOut:
        return cls(
            user.id,
            user.email,
            user.display_name,
            user.role.value,  # type: ignore[arg-type]
            user.status.value,  # type: ignore[arg-type]
            user.created_at,
            user.last_login_at,
        )


class AdminUserPage(msgspec.Struct):
    items: list[AdminUserOut]
    next_cursor: str | None


class AccountChanges(msgspec.Struct, forbid_unknown_fields=True):
    """Only the fields sent change. Disabling ends the user's tokens at once."""

    role: RoleName | msgspec.UnsetType = msgspec.UNSET
    status: StatusName | msgspec.UnsetType = msgspec.UNSET


class AuditEntryOut(msgspec.Struct):
    id: str
    at: datetime
    actor_id: str
    action: str
    target_type: str
    target_id: str
    details: dict[str, str | int | bool | None]
    trace_id: str | None

    @classmethod
    def of(cls, entry: AuditEntry) -> AuditEntryOut:
        return cls(
            entry.id,
            entry.at,
            entry.actor_id,
            entry.action.value,
            entry.target_type.value,
            entry.target_id,
            dict(entry.details),
            entry.trace_id,
        )


class AuditPage(msgspec.Struct):
    items: list[AuditEntryOut]
    next_cursor: str | None


class AdminPeopleController(Controller):
    path = "/admin"
    tags = ["admin"]
    guards = [requires(Role.ADMIN)]
    security = BEARER
    before_request = strict_request

    @get("/users", operation_id="adminListUsers", responses=problems(400, 401, 403))
    async def list_users(
        self,
        find_users: NamedDependency[FindUsers],
        q: str | None = Parameter(
            default=None,
            max_length=MAX_QUERY,
            pattern=NO_NUL,
            description="Part of the e-mail address or display name (case-insensitive).",
        ),
        role: RoleName | None = Parameter(default=None),
        status: StatusName | None = Parameter(default=None),
        limit: int = Parameter(default=20, ge=1, le=100),
        cursor: str | None = Parameter(default=None, description="`next_cursor` of the previous page."),
    ) -> AdminUserPage:
        """Accounts, newest first, filtered by text, role and status. An unknown filter is a 400."""
        user_filter = UserFilter(
            query=q.strip().lower() or None if q else None,
            role=Role(role) if role else None,
            status=UserStatus(status) if status else None,
        )
        page = await find_users(user_filter, limit, cursor or None)
        return AdminUserPage([AdminUserOut.of(u) for u in page.items], page.next_cursor)

    @patch(
        "/users/{user_id:str}",
        operation_id="adminUpdateUser",
        responses=problems(400, 401, 403, 404, 409, 422),
    )
    async def update_user(
        self,
        user_id: FromPath[str],
        data: JSONBody[AccountChanges],
        user: NamedDependency[User],
        change_account: NamedDependency[ChangeAccount],
    ) -> AdminUserOut:
        """Set an account's `role` and/or `status`. Disabling ends its tokens at once (enabling does not bring
        them back). An admin cannot disable or demote themselves, nor remove the last active admin (409).
        Each change appends an audit entry in the same transaction."""
        changed = await change_account(
            user,
            user_id,
            role=Role(data.role) if data.role is not msgspec.UNSET else None,
            status=UserStatus(data.status) if data.status is not msgspec.UNSET else None,
        )
        return AdminUserOut.of(changed)

    @get("/audit", operation_id="adminListAudit", responses=problems(400, 401, 403))
    async def list_audit(
        self,
        find_audit: NamedDependency[FindAudit],
        actor_id: str | None = Parameter(default=None, max_length=64, pattern=NO_NUL),
        action: ActionName | None = Parameter(default=None),
        target_id: str | None = Parameter(default=None, max_length=64, pattern=NO_NUL),
        from_: Annotated[
            str | None, QueryParameter(name="from", max_length=64, description=_BOUND_HELP)
        ] = None,
        to: Annotated[str | None, Parameter(max_length=64, description=_BOUND_HELP + " Excluded.")] = None,
        limit: int = Parameter(default=20, ge=1, le=100),
        cursor: str | None = Parameter(default=None, description="`next_cursor` of the previous page."),
    ) -> AuditPage:
        """Every admin write, newest first: who (`actor_id`) did what (`action`) to which object
        (`target_type`, `target_id`), when, with what (`details`, never a secret), in which trace."""
        since, until = bounds_of(from_, to)
        audit_filter = AuditFilter(
            actor_id=actor_id,
            action=AuditAction(action) if action else None,
            target_id=target_id,
            since=since,
            until=until,
        )
        page = await find_audit(audit_filter, limit, cursor or None)
        return AuditPage([AuditEntryOut.of(e) for e in page.items], page.next_cursor)
