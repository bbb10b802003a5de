"""The admin tools as pages: `/admin/users`, `/admin/orders` (and one order), `/admin/deliveries`,
`/admin/items` (moderation) and `/admin/audit`.

Same sign-in, headers, Content-Security-Policy and CSRF rule as the dashboard (dashboard.py): an admin's session
cookie, and every POST form carries the HMAC of that cookie. Each form calls the very use case the API calls, so
the audit trail and the 409 rules apply; a refusal shows the problem's detail, with the problem's status. A write
renders the list again (with the filters it was sent from) and says what was done. Filters are read leniently
(a page, not an API): a bad value is a 400 page that names it, never a 500.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

from litestar import Request, Response, get, post
from litestar.di import NamedDependency
from litestar.exceptions import ValidationException
from litestar.params import FromPath

from market.application.admin import ChangeAccount, FindAudit, FindUsers
from market.application.checkout import GetOrder, ListOrders
from market.application.deliveries import FindDeliveries, RetryDelivery
from market.application.moderation import FindItems, SetItemStatus
from market.domain.admin import MAX_QUERY, MAX_REASON, AuditAction, AuditFilter, UserFilter
from market.domain.catalog import ItemFilter, ItemStatus, normalise_query
from market.domain.errors import DomainError
from market.domain.orders import OrderStatus
from market.domain.users import Role, User, UserStatus
from market.domain.webhooks import DeliveryStatus

from .dashboard import _page, checked_form, csrf_token, signed_in_message
from .dashboard_sessions import admin_session
from .problems import PROBLEM_TYPES
from .query import bounds_of, order_filter_of, uuid_or_400

PAGE_SIZE = 25
MAX_INPUT = 254
"""Longest value of a filter field the pages read (longer input is cut)."""
ROLES = tuple(role.value for role in Role)
USER_STATUSES = tuple(status.value for status in UserStatus)
ORDER_STATUSES = tuple(status.value for status in OrderStatus)
DELIVERY_STATUSES = tuple(status.value for status in DeliveryStatus)
ITEM_STATUSES = tuple(status.value for status in ItemStatus)
AUDIT_ACTIONS = tuple(action.value for action in AuditAction)
RETRYABLE = frozenset({DeliveryStatus.PENDING.value, DeliveryStatus.FAILED.value})

FieldErrors = list[tuple[str, str]]


class Refused(Exception):
    """A filter or form value the page cannot use: (field, message) pairs, shown on a 400 page."""

    def __init__(self, errors: FieldErrors) -> None:
        super().__init__(errors)
        self.errors = errors


def problem_status(exc: DomainError) -> int:
    """The status the API answers this error with (its problem type's)."""
    return next(p.status for cls, p in PROBLEM_TYPES.items() if isinstance(exc, cls))


def read_fields(source: Mapping[str, Any], names: Sequence[str]) -> dict[str, str]:
    """The named fields of a query or form, stripped and cut to MAX_INPUT (absent: empty)."""
    return {name: str(source.get(name) or "").strip()[:MAX_INPUT] for name in names}


def no_nul(fields: Mapping[str, str]) -> None:
    """Refused naming every field holding a NUL (PostgreSQL text cannot hold one: it is bad input, not a 500)."""
    bad = [(name, "must not contain NUL") for name, value in fields.items() if "\x00" in value]
    if bad:
        raise Refused(bad)


def one_of(name: str, value: str, allowed: Sequence[str]) -> str | None:
    """`value` when it is one of `allowed`, None when empty; otherwise Refused naming the field."""
    if not value:
        return None
    if value not in allowed:
        raise Refused([(name, f"must be one of {', '.join(allowed)}")])
    return value


def refused_fields(exc: ValidationException) -> FieldErrors:
    return [(str(e.get("key")), str(e.get("message"))) for e in exc.extra if isinstance(e, dict)]  # type: ignore[union-attr]


def page_url(path: str, filters: Mapping[str, str], cursor: str | None = None) -> str:
    """`path` with the non-empty filters (and a cursor) as its query."""
    query = {name: value for name, value in filters.items() if value and name != "cursor"}
    if cursor:
        query["cursor"] = cursor
    return f"{path}?{urlencode(query)}" if query else path


class Outcome:
    """What a write did, shown above the list: a notice, or the refusal's detail and status."""

    def __init__(self, notice: str | None = None, error: str | None = None, status: int = 200) -> None:
        self.notice, self.error, self.status = notice, error, status

    @classmethod
    def of(cls, exc: DomainError) -> Outcome:
        return cls(error=exc.detail, status=problem_status(exc))


NOTHING = Outcome()


def _render(
    template: str,
    user: User,
    token: str,
    outcome: Outcome,
    filters: Mapping[str, str],
    errors: FieldErrors,
    **context: Any,
) -> Response[Any]:
    status = 400 if errors else outcome.status
    return _page(
        template,
        status,
        email=user.email,
        csrf_token=csrf_token(token),
        form=filters,
        filter_errors=errors,
        outcome=outcome,
        **context,
    )


# --- Users -------------------------------------------------------------------------------------------------

USER_FILTERS = ("q", "role", "status", "cursor")


async def _users(
    user: User,
    token: str,
    filters: dict[str, str],
    find_users: FindUsers,
    outcome: Outcome = NOTHING,
) -> Response[Any]:
    errors: FieldErrors = []
    items: list[User] = []
    next_url = None
    try:
        no_nul(filters)
        role = one_of("role", filters["role"], ROLES)
        status = one_of("status", filters["status"], USER_STATUSES)
        query = filters["q"][:MAX_QUERY].lower() or None
        page = await find_users(
            UserFilter(
                query=query,
                role=Role(role) if role else None,
                status=UserStatus(status) if status else None,
            ),
            PAGE_SIZE,
            filters["cursor"] or None,
        )
    except Refused as exc:
        errors = exc.errors
    except DomainError as exc:  # a cursor of another list
        errors = [("cursor", exc.detail)]
    else:
        items = list(page.items)
        next_url = page_url("/admin/users", filters, page.next_cursor) if page.next_cursor else None
    return _render(
        "admin/users.html",
        user,
        token,
        outcome,
        filters,
        errors,
        users=items,
        next_url=next_url,
        roles=ROLES,
        statuses=USER_STATUSES,
    )


@get("/users")
async def users_page(
    request: Request[Any, Any, Any], find_users: NamedDependency[FindUsers]
) -> Response[Any]:
    """Accounts, newest first, by text, role and status; a form per account to change its role or status."""
    user, token = await admin_session(request)
    return await _users(user, token, read_fields(request.query_params, USER_FILTERS), find_users)


@post("/users/{user_id:str}")
async def update_user(
    request: Request[Any, Any, Any],
    user_id: FromPath[str],
    find_users: NamedDependency[FindUsers],
    change_account: NamedDependency[ChangeAccount],
) -> Response[Any]:
    """`PATCH /api/v1/admin/users/{user_id}` as a form: role and status."""
    user, token = await admin_session(request)
    form = await checked_form(request, token)
    filters = read_fields(form, USER_FILTERS)
    values = read_fields(
        form, ("new_role", "new_status")
    )  # not `role`/`status`: those are the list's filters
    try:
        role = one_of("role", values["new_role"], ROLES)
        status = one_of("status", values["new_status"], USER_STATUSES)
        changed = await change_account(
            user,
            user_id,
            role=Role(role) if role else None,
            status=UserStatus(status) if status else None,
        )
    except Refused as exc:
        outcome = Outcome(error="; ".join(f"{field} {message}" for field, message in exc.errors), status=400)
    except DomainError as exc:
        outcome = Outcome.of(exc)
    else:
        outcome = Outcome(notice=f"{changed.email} is now {changed.role.value}, {changed.status.value}.")
    return await _users(user, token, filters, find_users, outcome)


# --- Orders ------------------------------------------------------------------------------------------------

ORDER_FILTERS = ("status", "buyer_id", "seller_id", "from", "to", "cursor")


@get("/orders")
async def orders_page(
    request: Request[Any, Any, Any], list_orders: NamedDependency[ListOrders]
) -> Response[Any]:
    """Every order, newest first, by status, buyer, seller and creation time (`from` included, `to` not)."""
    user, token = await admin_session(request)
    filters = read_fields(request.query_params, ORDER_FILTERS)
    errors: FieldErrors = []
    items: list[Any] = []
    next_url = None
    try:
        no_nul(filters)
        status = one_of("status", filters["status"], ORDER_STATUSES)
        order_filter = order_filter_of(
            status,
            filters["buyer_id"] or None,
            filters["seller_id"] or None,
            filters["from"] or None,
            filters["to"] or None,
        )
        page = await list_orders(user, PAGE_SIZE, filters["cursor"] or None, order_filter=order_filter)
    except Refused as exc:
        errors = exc.errors
    except ValidationException as exc:
        errors = refused_fields(exc)
    except DomainError as exc:
        errors = [("cursor", exc.detail)]
    else:
        items = list(page.items)
        next_url = page_url("/admin/orders", filters, page.next_cursor) if page.next_cursor else None
    return _render(
        "admin/orders.html",
        user,
        token,
        NOTHING,
        filters,
        errors,
        orders=items,
        next_url=next_url,
        statuses=ORDER_STATUSES,
    )


async def order_page_response(
    request: Request[Any, Any, Any],
    order_id: str,
    get_order: GetOrder,
    outcome: Outcome = NOTHING,
) -> Response[Any]:
    """An order's page (with its refund form: admin_refund_pages.py), saying what a form did."""
    from .admin_refund_pages import refund_form_context  # it builds on this module

    user, token = await admin_session(request)
    try:
        order = await get_order(order_id, user)
    except DomainError as exc:
        return signed_in_message(token, problem_status(exc), title="No such order", message=exc.detail)
    return _render("admin/order.html", user, token, outcome, {}, [], order=order, **refund_form_context())


@get("/orders/{order_id:str}")
async def order_page(
    request: Request[Any, Any, Any], order_id: FromPath[str], get_order: NamedDependency[GetOrder]
) -> Response[Any]:
    """One order: its lines, total and payment, and a refund form."""
    return await order_page_response(request, order_id, get_order)


# --- Webhook deliveries ------------------------------------------------------------------------------------

DELIVERY_FILTERS = ("seller_id", "status", "cursor")


async def _deliveries(
    user: User,
    token: str,
    filters: dict[str, str],
    find_deliveries: FindDeliveries,
    outcome: Outcome = NOTHING,
) -> Response[Any]:
    errors: FieldErrors = []
    items: list[Any] = []
    next_url = None
    try:
        no_nul(filters)
        status = one_of("status", filters["status"], DELIVERY_STATUSES)
        seller_id = uuid_or_400("seller_id", filters["seller_id"] or None)
        page = await find_deliveries(
            seller_id, DeliveryStatus(status) if status else None, PAGE_SIZE, filters["cursor"] or None
        )
    except Refused as exc:
        errors = exc.errors
    except ValidationException as exc:
        errors = refused_fields(exc)
    except DomainError as exc:
        errors = [("cursor", exc.detail)]
    else:
        items = list(page.items)
        next_url = page_url("/admin/deliveries", filters, page.next_cursor) if page.next_cursor else None
    return _render(
        "admin/deliveries.html",
        user,
        token,
        outcome,
        filters,
        errors,
        deliveries=items,
        next_url=next_url,
        statuses=DELIVERY_STATUSES,
        retryable=RETRYABLE,
    )


@get("/deliveries")
async def deliveries_page(
    request: Request[Any, Any, Any], find_deliveries: NamedDependency[FindDeliveries]
) -> Response[Any]:
    """Every seller webhook delivery, newest first, by seller and status, with a Retry button."""
    user, token = await admin_session(request)
    return await _deliveries(
        user, token, read_fields(request.query_params, DELIVERY_FILTERS), find_deliveries
    )


@post("/deliveries/{delivery_id:str}/retry")
async def retry_delivery_form(
    request: Request[Any, Any, Any],
    delivery_id: FromPath[str],
    find_deliveries: NamedDependency[FindDeliveries],
    retry_delivery: NamedDependency[RetryDelivery],
) -> Response[Any]:
    """`POST /api/v1/admin/webhooks/deliveries/{delivery_id}/retry` as a button (audited)."""
    user, token = await admin_session(request)
    form = await checked_form(request, token)
    try:
        record = await retry_delivery(user, delivery_id)
    except DomainError as exc:
        outcome = Outcome.of(exc)
    else:
        outcome = Outcome(notice=f"Delivery {record.id} is queued again; the worker sends it within seconds.")
    return await _deliveries(user, token, read_fields(form, DELIVERY_FILTERS), find_deliveries, outcome)


# --- Moderation --------------------------------------------------------------------------------------------

ITEM_FILTERS = ("status", "q", "seller_id", "cursor")


async def _items(
    user: User,
    token: str,
    filters: dict[str, str],
    find_items: FindItems,
    outcome: Outcome = NOTHING,
) -> Response[Any]:
    errors: FieldErrors = []
    items: list[Any] = []
    next_url = None
    try:
        no_nul(filters)
        status = one_of("status", filters["status"], ITEM_STATUSES) or ItemStatus.ACTIVE.value
        seller_id = uuid_or_400("seller_id", filters["seller_id"] or None)
        page = await find_items(
            ItemFilter(query=normalise_query(filters["q"]), seller_id=seller_id, status=ItemStatus(status)),
            PAGE_SIZE,
            filters["cursor"] or None,
        )
    except Refused as exc:
        errors = exc.errors
    except ValidationException as exc:
        errors = refused_fields(exc)
    except DomainError as exc:
        errors = [("cursor", exc.detail)]
    else:
        items = list(page.items)
        next_url = page_url("/admin/items", filters, page.next_cursor) if page.next_cursor else None
    return _render(
        "admin/items.html",
        user,
        token,
        outcome,
        filters,
        errors,
        items=items,
        next_url=next_url,
        statuses=ITEM_STATUSES,
        max_reason=MAX_REASON,
    )


@get("/items")
async def items_page(
    request: Request[Any, Any, Any], find_items: NamedDependency[FindItems]
) -> Response[Any]:
    """Items by status (active by default), text and seller, with a form to set each one's status."""
    user, token = await admin_session(request)
    return await _items(user, token, read_fields(request.query_params, ITEM_FILTERS), find_items)


@post("/items/{item_id:str}/status")
async def moderate_item(
    request: Request[Any, Any, Any],
    item_id: FromPath[str],
    find_items: NamedDependency[FindItems],
    set_item_status: NamedDependency[SetItemStatus],
) -> Response[Any]:
    """`PATCH /api/v1/admin/items/{item_id}` as a form: a status and a reason (audited)."""
    user, token = await admin_session(request)
    form = await checked_form(request, token)
    new_status = str(form.get("new_status") or "")
    reason = str(form.get("reason") or "").strip()
    if new_status not in ITEM_STATUSES:
        outcome = Outcome(error=f"The status must be one of {', '.join(ITEM_STATUSES)}.", status=400)
    elif not reason or len(reason) > MAX_REASON or "\x00" in reason:
        outcome = Outcome(error=f"Give a reason (at most {MAX_REASON} characters).", status=400)
    else:
        try:
            item = await set_item_status(user, item_id, ItemStatus(new_status), reason)
        except DomainError as exc:
            outcome = Outcome.of(exc)
        else:
            outcome = Outcome(notice=f"{item.title} is now {item.status.value}.")
    return await _items(user, token, read_fields(form, ITEM_FILTERS), find_items, outcome)


# --- Audit trail -------------------------------------------------------------------------------------------

AUDIT_FILTERS = ("actor_id", "action", "target_id", "from", "to", "cursor")


@get("/audit")
async def audit_page(
    request: Request[Any, Any, Any], find_audit: NamedDependency[FindAudit]
) -> Response[Any]:
    """Every admin write, newest first, by actor, action, target and time (`from` included, `to` not)."""
    user, token = await admin_session(request)
    filters = read_fields(request.query_params, AUDIT_FILTERS)
    errors: FieldErrors = []
    items: list[Any] = []
    next_url = None
    try:
        no_nul(filters)
        action = one_of("action", filters["action"], AUDIT_ACTIONS)
        since, until = bounds_of(filters["from"] or None, filters["to"] or None)
        page = await find_audit(
            AuditFilter(
                actor_id=filters["actor_id"][:64] or None,
                action=AuditAction(action) if action else None,
                target_id=filters["target_id"][:64] or None,
                since=since,
                until=until,
            ),
            PAGE_SIZE,
            filters["cursor"] or None,
        )
    except Refused as exc:
        errors = exc.errors
    except ValidationException as exc:
        errors = refused_fields(exc)
    except DomainError as exc:
        errors = [("cursor", exc.detail)]
    else:
        items = list(page.items)
        next_url = page_url("/admin/audit", filters, page.next_cursor) if page.next_cursor else None
    return _render(
        "admin/audit.html",
        user,
        token,
        NOTHING,
        filters,
        errors,
        entries=items,
        next_url=next_url,
        actions=AUDIT_ACTIONS,
    )


ADMIN_PAGES = [
    users_page,
    update_user,
    orders_page,
    order_page,
    deliveries_page,
    retry_delivery_form,
    items_page,
    moderate_item,
    audit_page,
]
