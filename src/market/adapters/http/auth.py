"""Bearer-token authentication and role guards.

A guard authenticates (401 when the token is missing, malformed, forged, expired or revoked), checks the role
(403), stores the user on the connection state for the `user` dependency, and tags the server span.
"""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from opentelemetry import trace

from market.application.accounts import UserOfToken
from market.domain.errors import DEAD_TOKEN
from market.domain.users import Role, User
from market.telemetry import names, request_context


async def authenticate(connection: ASGIConnection[Any, Any, Any, Any]) -> User:
    cached = connection.scope.get("state", {}).get("user")
    if cached is not None:
        return cached
    scheme, _, token = connection.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise NotAuthorizedException("Send a bearer token in the Authorization header.")
    user = await user_of_token(connection, token.strip())
    if user is None:
        raise NotAuthorizedException(DEAD_TOKEN)
    return user


async def user_of_token(connection: ASGIConnection[Any, Any, Any, Any], token: str) -> User | None:
    """The user an access token was issued to (remembered for the request), or None when the token is forged,
    malformed, expired or revoked, or its user is gone or disabled. The admin dashboard's session cookie holds
    such a token too. Revocation costs no extra query: the user row read here carries the token version."""
    user_of: UserOfToken = connection.app.state["user_of_token"]
    user = await user_of(token)
    if user is None:
        return None
    remember_user(connection, user)
    return user


def remember_user(connection: ASGIConnection[Any, Any, Any, Any], user: User) -> None:
    """Store the signed-in user for the request (the `user` dependency, logs) and tag the server span."""
    connection.scope.setdefault("state", {})["user"] = user
    if (request := request_context.current()) is not None:
        request.user_id = user.id
    span = trace.get_current_span()
    span.set_attribute(names.ENDUSER_ID, user.id)
    span.set_attribute(names.USER_ROLE, user.role.value)


def requires(*roles: Role) -> Any:
    """A guard admitting authenticated users with one of `roles` (any role when none are given)."""

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        user = await authenticate(connection)
        if roles and user.role not in roles:
            raise PermissionDeniedException("Your account's role may not do this.")

    return guard


async def provide_user(request: Request[Any, Any, Any]) -> User:
    """The `user` dependency; its handlers are guarded, so this only reads what the guard stored."""
    return await authenticate(request)
