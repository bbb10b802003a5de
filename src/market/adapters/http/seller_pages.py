"""The seller area: `/seller/dashboard` (the figures of `GET /api/v1/seller/dashboard` as a page) and
`/seller/deliveries` (their webhook deliveries, with a Retry button), `/seller/logout`.

A seller signs in on the dashboard's form (`/admin/login`), which gives them the seller area's own cookie
(`market_seller`, `Path=/seller`; the same kind of access token as the admin's, so expiry and revocation are the
API's). The rules are the admin pages': every response `no-store` under the strict Content-Security-Policy, every
POST form with the CSRF token of its session. A buyer's or an admin's token is refused here (403), as a seller's
is on the admin pages.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from contextlib import suppress
from datetime import datetime
from typing import Any

from litestar import Request, Response, Router, get, post
from litestar.di import NamedDependency
from litestar.exceptions import ValidationException
from litestar.params import FromPath

from market.application.accounts import SignOutEverywhere
from market.application.analytics import SellerDashboardOf
from market.application.deliveries import RetryDelivery
from market.application.seller_webhooks import ListWebhookDeliveries
from market.domain.errors import DomainError, TokenRevoked
from market.domain.users import Role, User

from .admin_pages import NOTHING, PAGE_SIZE, RETRYABLE, Outcome, page_url, read_fields
from .analytics import period_of
from .auth import user_of_token
from .dashboard import (
    LOGIN_URL,
    MAX_PERIOD_INPUT,
    SELLER_COOKIE,
    SELLER_COOKIE_PATH,
    SELLER_HOME,
    _add_security_headers,
    _page,
    _redirect,
    _session_cookie,
    checked_form,
    csrf_token,
    page_refused,
    signed_in_message,
)
from .dashboard_sessions import PageRefused

NOT_A_SELLER = "This page is for sellers only: sign in with a seller account."
SELLER_LOGOUT = "/seller/logout"
CLEARED_SELLER_COOKIE = _session_cookie("", 0, SELLER_COOKIE, SELLER_COOKIE_PATH)
_BARE_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


async def _seller(request: Request[Any, Any, Any]) -> tuple[User, str]:
    """(seller, token) of the seller cookie; otherwise PageRefused: to sign-in (no or a dead session), or 403
    (not a seller)."""
    token = request.cookies.get(SELLER_COOKIE, "")
    user = await user_of_token(request, token) if token else None
    if user is None:
        raise PageRefused(
            _redirect(LOGIN_URL, CLEARED_SELLER_COOKIE if SELLER_COOKIE in request.cookies else None)
        )
    if user.role is not Role.SELLER:
        raise PageRefused(
            signed_in_message(token, 403, title="Not allowed", message=NOT_A_SELLER, logout_url=SELLER_LOGOUT)
        )
    return user, token


@get("/")
async def seller_home() -> Response[Any]:
    return _redirect(SELLER_HOME)


@get("/dashboard")
async def seller_dashboard_page(
    request: Request[Any, Any, Any],
    seller_dashboard: NamedDependency[SellerDashboardOf],
    now: NamedDependency[Callable[[], datetime]],
) -> Response[Any]:
    """The seller's figures over `from`/`to` (dates, or RFC 3339 timestamps; the last 30 days by default)."""
    user, token = await _seller(request)
    raw_from = str(request.query_params.get("from") or "").strip()[:MAX_PERIOD_INPUT]
    raw_to = str(request.query_params.get("to") or "").strip()[:MAX_PERIOD_INPUT]
    errors: list[tuple[str, str]] = []
    board = None
    try:
        # A date typed as `to` includes its whole day, as on the admin dashboard.
        to = f"{raw_to}T23:59:59.999999+00:00" if _BARE_DATE.match(raw_to) else raw_to
        period = period_of(raw_from or None, to or None, now())
    except ValidationException as exc:
        errors = [(str(e.get("key")), str(e.get("message"))) for e in exc.extra if isinstance(e, dict)]  # type: ignore[union-attr]
    else:
        board = await seller_dashboard(user, period)
    return _page(
        "seller/dashboard.html",
        400 if errors else 200,
        email=user.email,
        csrf_token=csrf_token(token),
        form={"from": raw_from, "to": raw_to},
        shown_from=board.start.date().isoformat()
        if board
        else (raw_from if _BARE_DATE.match(raw_from) else ""),
        shown_to=board.end.date().isoformat() if board else (raw_to if _BARE_DATE.match(raw_to) else ""),
        filter_errors=errors,
        board=board,
    )


async def _deliveries(
    user: User,
    token: str,
    cursor: str,
    list_webhook_deliveries: ListWebhookDeliveries,
    outcome: Outcome = NOTHING,
) -> Response[Any]:
    errors: list[tuple[str, str]] = []
    items: list[Any] = []
    next_url = None
    try:
        page = await list_webhook_deliveries(user, PAGE_SIZE, cursor or None)
    except DomainError as exc:
        errors = [("cursor", exc.detail)]
    else:
        items = list(page.items)
        next_url = page_url("/seller/deliveries", {}, page.next_cursor) if page.next_cursor else None
    return _page(
        "seller/deliveries.html",
        400 if errors else outcome.status,
        email=user.email,
        csrf_token=csrf_token(token),
        form={"cursor": cursor},
        filter_errors=errors,
        outcome=outcome,
        deliveries=items,
        next_url=next_url,
        retryable=RETRYABLE,
    )


@get("/deliveries")
async def seller_deliveries_page(
    request: Request[Any, Any, Any], list_webhook_deliveries: NamedDependency[ListWebhookDeliveries]
) -> Response[Any]:
    """The seller's own webhook deliveries, newest first, with a Retry button for pending or failed ones."""
    user, token = await _seller(request)
    cursor = read_fields(request.query_params, ("cursor",))["cursor"]
    return await _deliveries(user, token, cursor, list_webhook_deliveries)


@post("/deliveries/{delivery_id:str}/retry")
async def seller_retry_delivery(
    request: Request[Any, Any, Any],
    delivery_id: FromPath[str],
    list_webhook_deliveries: NamedDependency[ListWebhookDeliveries],
    retry_delivery: NamedDependency[RetryDelivery],
) -> Response[Any]:
    """`POST /api/v1/seller/webhook/deliveries/{delivery_id}/retry` as a button: their own deliveries only
    (another seller's is a 404, as in the API)."""
    user, token = await _seller(request)
    form = await checked_form(request, token, logout_url=SELLER_LOGOUT)
    try:
        record = await retry_delivery(user, delivery_id)
    except DomainError as exc:
        outcome = Outcome.of(exc)
    else:
        outcome = Outcome(notice=f"Delivery {record.id} is queued again; it is sent within seconds.")
    cursor = read_fields(form, ("cursor",))["cursor"]
    return await _deliveries(user, token, cursor, list_webhook_deliveries, outcome)


@post("/logout")
async def seller_logout(
    request: Request[Any, Any, Any], sign_out_everywhere: NamedDependency[SignOutEverywhere]
) -> Response[Any]:
    """Sign out everywhere, as the admin pages' sign-out does (the token is revoked, not only the cookie; the
    session's CSRF token is needed; a dead session is only cleared)."""
    token = request.cookies.get(SELLER_COOKIE, "")
    user = await user_of_token(request, token) if token else None
    if user is not None:
        await checked_form(request, token, logout_url=SELLER_LOGOUT)
        with suppress(TokenRevoked):  # revoked meanwhile: signed out already
            await sign_out_everywhere(user)
    return _redirect(LOGIN_URL, CLEARED_SELLER_COOKIE)


def seller_pages_router() -> Router:
    """The pages under /seller: HTML for sellers, not part of the API (nor of its schema)."""
    return Router(
        path="/seller",
        route_handlers=[
            seller_home,
            seller_dashboard_page,
            seller_deliveries_page,
            seller_retry_delivery,
            seller_logout,
        ],
        include_in_schema=False,
        after_request=_add_security_headers,
        exception_handlers={PageRefused: page_refused},
    )
