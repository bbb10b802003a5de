"""The admin dashboard: `/admin/login`, `/admin/logout`, `/admin/dashboard` and its monitoring buttons.

Server-rendered HTML for people (Jinja templates under templates/, their figures from market.ops.dashboard,
the stylesheet served from static/ under /admin/static), kept out of the OpenAPI schema. The session is a cookie
holding an ordinary access token (`HttpOnly; Secure; SameSite=Strict; Path=/admin`), so sign-in, expiry and
revocation are the API's. Forms that change something carry a CSRF token: an HMAC of the session cookie keyed
by the cookie itself. Only someone who can read the HttpOnly cookie (nobody but the browser, and the server
that signed it with the service's secret) can make one, and it is bound to this very session, so a cookie
planted by a sibling site does not help an attacker either.

Every response, the stylesheet's too, is `Cache-Control: no-store` with a Content-Security-Policy that allows
nothing external and no inline style or script.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable
from contextlib import suppress
from datetime import datetime
from typing import Any, cast

from litestar import Request, Response, Router, get, post
from litestar.datastructures import FormMultiDict
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException, ValidationException
from litestar.response import Redirect, Template
from litestar.static_files import create_static_files_router

from market.application.accounts import IssueToken, SignOutEverywhere
from market.application.sessions import FindSessions
from market.domain.errors import InvalidCredentials, TokenRevoked
from market.domain.users import MAX_EMAIL_LENGTH, MAX_PASSWORD_LENGTH, Role, User
from market.ops import dashboard as pages
from market.ops.dashboard import DashboardFigures
from market.ops.selftest import MONITORING_KINDS, MonitoringKind, MonitoringTestError, RunMonitoringSelfTest

from .accounts import sign_in
from .alerts import AlertBoard
from .analytics import period_of
from .auth import user_of_token
from .dashboard_sessions import (
    PageRefused,
    admin_session,
    recent_failures,
    session_page,
    sessions_page,
)
from .html import HTML, SECURITY_HEADERS
from .limits import rate_limited
from .problems import record_server_error
from .templating import STATIC_DIR, STATIC_PATH

COOKIE = "market_admin"
COOKIE_PATH = "/admin"
CSRF_FIELD = "csrf_token"
LOGIN_URL = "/admin/login"
DASHBOARD_URL = "/admin/dashboard"
MAX_PERIOD_INPUT = 64
WRONG_CREDENTIALS = "Wrong e-mail or password."
NOT_ALLOWED = "This account may not use the admin dashboard: it is for administrators only."
NOT_A_SELLER_OR_ADMIN = (
    "This account may not sign in here: the admin pages are for administrators only, and the seller area for "
    "sellers."
)
FORM_REFUSED = (
    "This form was not sent from your dashboard session (or the session has changed since the page was shown), "
    "so nothing was done. Reload the dashboard and try again."
)
_BARE_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _page(name: str, status: int = 200, **context: Any) -> Template:
    return Template(name, context=context, status_code=status, media_type=HTML)


def _redirect(url: str, set_cookie: str | None = None) -> Redirect:
    return Redirect(url, status_code=303, headers={"Set-Cookie": set_cookie} if set_cookie else None)


async def checked_form(request: Request[Any, Any, Any], token: str, **page: Any) -> FormMultiDict:
    """The posted form when its CSRF token is this session's; otherwise PageRefused with the refused-form page
    (`page`: more of its context, e.g. the seller area's `logout_url`)."""
    form = await request.form()
    if not hmac.compare_digest(str(form.get(CSRF_FIELD) or ""), csrf_token(token)):
        raise PageRefused(signed_in_message(token, 403, title="Form refused", message=FORM_REFUSED, **page))
    return form


def signed_in_message(token: str, status: int, **context: Any) -> Template:
    """message.html for a signed-in session (`token`): its sign-out button carries the session's CSRF token,
    as every form does."""
    return _page("message.html", status, signed_in=True, csrf_token=csrf_token(token), **context)


def _session_cookie(token: str, max_age: int, name: str = COOKIE, path: str = COOKIE_PATH) -> str:
    # Written by hand: Litestar spells the attribute `SameSite=strict`; this is the spelling of RFC 6265bis.
    return f"{name}={token}; Max-Age={max_age}; Path={path}; Secure; HttpOnly; SameSite=Strict"


CLEARED_COOKIE = _session_cookie("", 0)
SELLER_COOKIE = "market_seller"
"""The seller area's session cookie (seller_pages.py): the same kind of token, sent to /seller only."""
SELLER_COOKIE_PATH = "/seller"
SELLER_HOME = "/seller/dashboard"


def csrf_token(session_token: str) -> str:
    """The token the dashboard's forms must send back: HMAC-SHA256 keyed by the session cookie's value."""
    return hmac.new(session_token.encode(), b"market admin dashboard form", hashlib.sha256).hexdigest()


def _add_security_headers(response: Response[Any]) -> Response[Any]:
    response.headers.update(SECURITY_HEADERS)
    return response


def page_refused(_: Request[Any, Any, Any], exc: PageRefused) -> Response[Any]:
    """The pages' routers' answer to PageRefused: its response, with the pages' headers (a response made by an
    exception handler does not pass through the router's `after_request`)."""
    return _add_security_headers(exc.response)


async def _session(request: Request[Any, Any, Any]) -> tuple[User, str] | None:
    """The signed-in user and their session token, or None (no cookie, or a forged or expired one)."""
    token = request.cookies.get(COOKIE, "")
    if not token:
        return None
    user = await user_of_token(request, token)
    return None if user is None else (user, token)


def _forbidden(token: str) -> Template:
    return signed_in_message(token, 403, title="Not allowed", message=NOT_ALLOWED)


def _login_page(status: int = 200, *, email: str = "", message: str | None = None) -> Template:
    return _page("login.html", status, email=email[:MAX_EMAIL_LENGTH], message=message)


@get("/login")
async def login_page() -> Template:
    """The sign-in form."""
    return _login_page()


@post("/login", guards=[rate_limited("sign-in")])
async def login(request: Request[Any, Any, Any], issue_token: NamedDependency[IssueToken]) -> Response[Any]:
    """Check the credentials as `POST /api/v1/auth/token` does; an admin gets the session cookie and the
    dashboard, a seller the seller area's cookie and their dashboard (seller_pages.py)."""
    form = await request.form()
    email = str(form.get("email") or "")
    password = str(form.get("password") or "")
    if not email or not password:
        return _login_page(400, email=email, message="Enter your e-mail and password.")
    # What the API refuses by schema (422) is simply wrong here: the page tells no more than "wrong".
    plausible = (
        len(email) <= MAX_EMAIL_LENGTH and len(password) <= MAX_PASSWORD_LENGTH and "\x00" not in email
    )
    try:
        if not plausible:
            raise InvalidCredentials()
        signed_in = await sign_in(request, issue_token, email, password)
    except InvalidCredentials:
        return _login_page(401, email=email, message=WRONG_CREDENTIALS)
    issued = signed_in.issued
    user = await user_of_token(request, issued.token)
    if user is None:  # deleted between the two reads
        return _login_page(401, email=email, message=WRONG_CREDENTIALS)
    if user.role is Role.SELLER:  # the same form signs a seller into their own area
        cookie = _session_cookie(issued.token, issued.expires_in, SELLER_COOKIE, SELLER_COOKIE_PATH)
        redirect = _redirect(SELLER_HOME, cookie)
    elif user.role is Role.ADMIN:
        redirect = _redirect(DASHBOARD_URL, _session_cookie(issued.token, issued.expires_in))
    else:
        return _page("message.html", 403, title="Not allowed", message=NOT_A_SELLER_OR_ADMIN, signed_in=False)
    if signed_in.device_cookie is not None:
        redirect.set_cookie(signed_in.device_cookie)
    return redirect


@post("/logout")
async def logout(
    request: Request[Any, Any, Any], sign_out_everywhere: NamedDependency[SignOutEverywhere]
) -> Redirect:
    """Sign out everywhere (the session's token is revoked, not only its cookie cleared: a copied cookie must
    not outlive the sign-out). A form like any other, it needs the session's CSRF token: a forged one would
    revoke every token the user has, the API's included. A dead session is only cleared."""
    session = await _session(request)
    if session is not None:
        await checked_form(request, session[1])
        with suppress(TokenRevoked):  # revoked meanwhile: signed out already
            await sign_out_everywhere(session[0])
    return _redirect(LOGIN_URL, CLEARED_COOKIE)


@get("/dashboard")
async def dashboard(
    request: Request[Any, Any, Any],
    figures: NamedDependency[DashboardFigures],
    now: NamedDependency[Callable[[], datetime]],
    find_sessions: NamedDependency[FindSessions],
) -> Response[Any]:
    """The dashboard over `from`/`to` (dates, or RFC 3339 timestamps; the last 30 days by default)."""
    user, token = await admin_session(request)
    raw_from = request.query_params.get("from") or ""
    raw_to = request.query_params.get("to") or ""
    context, status = await _render(request, figures, now(), user, token, raw_from, raw_to)
    context["failing_sessions"] = await recent_failures(find_sessions, now())
    return _page("dashboard.html", status, **context)


@post("/dashboard/test-monitoring")
async def test_monitoring(
    request: Request[Any, Any, Any],
    run_monitoring_self_test: NamedDependency[RunMonitoringSelfTest],
    figures: NamedDependency[DashboardFigures],
    now: NamedDependency[Callable[[], datetime]],
    find_sessions: NamedDependency[FindSessions],
) -> Response[Any]:
    """The monitoring self-test's buttons: the very signal of `POST /api/v1/admin/test-monitoring`, then the
    dashboard with what was produced, its trace id and Sentry event id."""
    user, token = await admin_session(request)
    form = await checked_form(request, token)
    trace_id = request.scope["state"]["trace_id"]
    kind = str(form.get("kind") or "")
    status = 200
    if kind not in MONITORING_KINDS:
        result = pages.MonitoringResult(
            kind, trace_id, None, error=f"Nothing was produced: there is no kind {kind[:40]!r}."
        )
        status = 400
    else:
        route = request.scope.get("path_template") or request.url.path
        try:
            event_id = await run_monitoring_self_test(
                cast(MonitoringKind, kind),
                user=user,
                route=route,
                method=request.method,
            )
        except MonitoringTestError as exc:
            # Reported exactly as an unhandled error is (span, log, Sentry), and answered with a 500 so the
            # error-rate metric counts it too; the page still tells the on-call person where to look.
            event_id = record_server_error(request, exc)
            status = 500
        result = pages.MonitoringResult(kind, trace_id, event_id)
    raw_from, raw_to = str(form.get("from") or ""), str(form.get("to") or "")
    # The answer's status is the button's: what was asked was done (or refused) whatever the period carried
    # along says; a bad period is shown on the page as when viewing it, not answered as a refusal.
    context, _ = await _render(request, figures, now(), user, token, raw_from, raw_to, result)
    context["failing_sessions"] = await recent_failures(find_sessions, now())
    return _page("dashboard.html", status, **context)


async def _render(
    request: Request[Any, Any, Any],
    figures_of: DashboardFigures,
    now: datetime,
    user: User,
    token: str,
    raw_from: str,
    raw_to: str,
    result: pages.MonitoringResult | None = None,
) -> tuple[dict[str, Any], int]:
    """The dashboard page's context over the typed period, and its status (400 for a bad period)."""
    raw_from, raw_to = raw_from.strip()[:MAX_PERIOD_INPUT], raw_to.strip()[:MAX_PERIOD_INPUT]
    figures: pages.Figures | None = None
    errors: list[tuple[str, str]] = []
    try:
        # A date typed as `to` includes its whole day (the API takes a bare date as its first instant).
        to = f"{raw_to}T23:59:59.999999+00:00" if _BARE_DATE.match(raw_to) else raw_to
        period = period_of(raw_from or None, to or None, now)
    except ValidationException as exc:
        errors = [(str(e.get("key")), str(e.get("message"))) for e in exc.extra if isinstance(e, dict)]  # type: ignore[union-attr]
    else:
        figures = await figures_of(period)
    form = pages.PeriodForm(
        raw_from=raw_from,
        raw_to=raw_to,
        shown_from=figures.funnel.from_.date().isoformat() if figures else _date_or_empty(raw_from),
        shown_to=figures.funnel.to.date().isoformat() if figures else _date_or_empty(raw_to),
        errors=errors,
    )
    board: AlertBoard | None = request.app.state.get("alerts")
    context = pages.dashboard_context(
        email=user.email,
        csrf_token=csrf_token(token),
        form=form,
        figures=figures,
        alerts=None if board is None else board.statuses(),
        alerts_evaluated_at=None if board is None else board.evaluated_at,
        result=result,
    )
    return context, 400 if errors else 200


def _date_or_empty(raw: str) -> str:
    return raw if _BARE_DATE.match(raw) else ""


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


async def _plain_file_name(request: Request[Any, Any, Any]) -> None:
    """`before_request` of the stylesheet's route: a path with a control character names no file of ours, and
    a NUL in it would make the file system lookup raise (a 500), so it is a 404 before the lookup."""
    if _CONTROL.search(request.url.path):
        raise NotFoundException()


def dashboard_router() -> Router:
    """The pages under /admin: HTML for people, not part of the API (nor of its schema)."""
    # They build on this module's helpers.
    from .admin_pages import ADMIN_PAGES
    from .admin_refund_pages import refund_form

    return Router(
        path="/admin",
        route_handlers=[
            login_page,
            login,
            logout,
            dashboard,
            test_monitoring,
            sessions_page,
            session_page,
            *ADMIN_PAGES,
            refund_form,
            create_static_files_router(
                path=STATIC_PATH.removeprefix("/admin"),
                directories=[STATIC_DIR],
                before_request=_plain_file_name,
            ),
        ],
        include_in_schema=False,
        after_request=_add_security_headers,
        exception_handlers={PageRefused: page_refused},
    )
