"""Accounts: register, sign in, who am I, sign out everywhere, change the password."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.di import NamedDependency
from litestar.params import JSONBody

from market.application.accounts import (
    ChangePassword,
    IssueToken,
    Register,
    RegisterUser,
    SignOutEverywhere,
)
from market.application.ports import AccessToken
from market.domain.users import (
    MAX_EMAIL_LENGTH,
    MAX_PASSWORD_LENGTH,
    MIN_PASSWORD_LENGTH,
    User,
)

from .auth import requires
from .limits import DEVICE_COOKIE, RouteLimits, rate_limited, sign_in_slot, signed_in_lane
from .openapi import BEARER, problems
from .redacted import RedactedStruct
from .validation import EMAIL, NO_NUL, NOT_BLANK


class RegisterBody(RedactedStruct, forbid_unknown_fields=False):
    secret_fields = frozenset({"password"})

    email: Annotated[
        str, msgspec.Meta(max_length=MAX_EMAIL_LENGTH, pattern=EMAIL, examples=["ada@example.com"])
    ]
    password: Annotated[str, msgspec.Meta(min_length=MIN_PASSWORD_LENGTH, max_length=MAX_PASSWORD_LENGTH)]
    display_name: Annotated[str, msgspec.Meta(min_length=1, max_length=100, pattern=NOT_BLANK)]
    role: Literal["buyer", "seller"]


class TokenBody(RedactedStruct):
    secret_fields = frozenset({"password"})

    email: Annotated[str, msgspec.Meta(max_length=MAX_EMAIL_LENGTH, pattern=NO_NUL)]
    password: Annotated[str, msgspec.Meta(max_length=MAX_PASSWORD_LENGTH)]


class PasswordChangeBody(msgspec.Struct):
    current_password: Annotated[str, msgspec.Meta(max_length=MAX_PASSWORD_LENGTH)]
    new_password: Annotated[str, msgspec.Meta(max_length=MAX_PASSWORD_LENGTH)]
    """The password rules (length and the rest) are the domain's: a breach answers 422 naming `new_password`."""


class UserOut(msgspec.Struct):
    id: str
    email: str
    display_name: str
    role: str
    created_at: datetime

    @classmethod
    def of(cls, user: User) -> UserOut:
        return cls(user.id, user.email, user.display_name, user.role.value, user.created_at)


class TokenOut(RedactedStruct):
    secret_fields = frozenset({"access_token"})

    access_token: str  # hidden from repr (secret_fields)
    token_type: Literal["bearer"]  # always "bearer" (not a secret)
    expires_in: int


class AccountController(Controller):
    tags = ["accounts"]

    @post(
        "/auth/register",
        operation_id="register",
        status_code=201,
        guards=[rate_limited("register")],
        responses=problems(400, 409, 422, 429, 503),
    )
    async def register(
        self, data: JSONBody[RegisterBody], register_user: NamedDependency[RegisterUser]
    ) -> UserOut:
        """Create a buyer or seller account. Passwords need at least 10 characters."""
        user = await register_user(Register(data.email, data.password, data.display_name, data.role))
        return UserOut.of(user)

    @post(
        "/auth/token",
        operation_id="issueToken",
        status_code=200,
        guards=[rate_limited("sign-in")],
        responses=problems(400, 401, 422, 429, 503),
    )
    async def token(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[TokenBody],
        issue_token: NamedDependency[IssueToken],
    ) -> Response[TokenOut]:
        """Exchange e-mail and password for a bearer token. The response also sets `market_device`, a signed
        known-device cookie: sent back with later sign-ins to the same account, it keeps them served promptly
        while the service refuses a flood of bad sign-ins (429/503)."""
        signed_in = await sign_in(request, issue_token, data.email, data.password)
        issued = signed_in.issued
        return Response(
            TokenOut(access_token=issued.token, token_type="bearer", expires_in=issued.expires_in),
            cookies=[signed_in.device_cookie] if signed_in.device_cookie else None,
        )

    @get("/me", operation_id="me", guards=[requires()], security=BEARER, responses=problems(401))
    async def me(self, user: NamedDependency[User]) -> UserOut:
        """The signed-in user."""
        return UserOut.of(user)

    @post(
        "/auth/logout",
        operation_id="signOutEverywhere",
        status_code=204,
        guards=[requires()],
        security=BEARER,
        responses=problems(401),
    )
    async def logout(
        self, user: NamedDependency[User], sign_out_everywhere: NamedDependency[SignOutEverywhere]
    ) -> None:
        """Sign out everywhere: every token issued to the caller so far, this one included, stops working."""
        await sign_out_everywhere(user)

    @post(
        "/me/password",
        operation_id="changePassword",
        status_code=204,
        guards=[requires()],
        security=BEARER,
        responses=problems(400, 401, 422, 429),
    )
    async def change_password(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[PasswordChangeBody],
        user: NamedDependency[User],
        change_password: NamedDependency[ChangePassword],
    ) -> None:
        """Change the caller's password. Every token issued before, this one included, stops working: sign in
        again with the new password. A wrong current password is a 401 `wrong-password` problem, and counts
        against the account's failed sign-ins (MARKET_RATE_LIMIT_ACCOUNT): past the limit, a 429. A new password
        that breaks the password rules, or is the current one, is a 422 naming `new_password`."""
        with signed_in_lane(request):  # a signed-in user: the reserved hashing lane
            await change_password(user, data.current_password, data.new_password)


@dataclass(frozen=True, slots=True)
class SignedIn:
    issued: AccessToken
    device_cookie: Cookie | None
    """The known-device cookie to set (None when limits are off)."""


async def sign_in(
    request: Request[Any, Any, Any], issue_token: IssueToken, email: str, password: str
) -> SignedIn:
    """The sign-in use case in one of the client address's few concurrent sign-in places, in the reserved
    hashing lane when the device signed in to this account before: what both the API's `POST /auth/token` and
    the admin dashboard's form run. A success (re)issues the device's known-device cookie."""
    async with sign_in_slot(request, email):
        issued = await issue_token(email, password)
    limits: RouteLimits | None = request.app.state.get("limits")
    if limits is None:
        return SignedIn(issued, None)
    cookie = Cookie(
        key=DEVICE_COOKIE,
        value=limits.devices.issue(email),
        max_age=limits.devices.lifetime_s,
        path="/",
        secure=True,
        httponly=True,
        samesite="strict",
    )
    return SignedIn(issued, cookie)
