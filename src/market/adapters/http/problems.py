"""RFC 9457 problem details: the one place where errors become HTTP responses.

Every 4xx/5xx leaves through here as `application/problem+json` carrying the request's `trace_id`.
Domain errors map to one stable `type` each (PROBLEM_TYPES); plain HTTP errors use `about:blank`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import (
    HTTPException,
    MethodNotAllowedException,
    NotFoundException,
    SerializationException,
    ValidationException,
)
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from litestar.utils import normalize_path
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from market.domain import admin, errors, orders, refunds
from market.telemetry import request_context
from market.telemetry.sentry import report_exception

from .html import error_page, error_page_wanted, not_found_page, wants_html
from .validation import MalformedBody, body_field_errors, plain, public_name

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "https://market.dev/problems/"


@dataclass(frozen=True, slots=True)
class ProblemType:
    slug: str
    title: str
    status: int

    @property
    def uri(self) -> str:
        return PROBLEM_BASE + self.slug


VALIDATION = ProblemType("validation-error", "Some input is not valid", 422)
BAD_PARAMETER = ProblemType("invalid-parameter", "A query or path parameter is not valid", 400)
MALFORMED = ProblemType("malformed-request", "The request body could not be read", 400)
UNAUTHENTICATED = ProblemType("unauthenticated", "Sign-in required", 401)
FORBIDDEN = ProblemType("forbidden", "Not allowed", 403)
INTERNAL = ProblemType("internal-error", "Something went wrong on our side", 500)
UNAVAILABLE = ProblemType("service-unavailable", "The service is temporarily unavailable", 503)
RETRY_AFTER_S = 5
"""What a 503 for the database (timeouts, lock waits, overload, database gone) tells clients to wait."""
RATE_LIMITED = ProblemType("rate-limited", "Too many requests", 429)
BUSY = ProblemType("busy", "The service is busy", 503)

# One stable type per domain error. Order matters only for subclasses (first match wins).
PROBLEM_TYPES: dict[type[errors.DomainError], ProblemType] = {
    errors.RateLimited: RATE_LIMITED,
    errors.ServerBusy: BUSY,
    errors.WebhookUrlNotAllowed: ProblemType(
        "webhook-url-not-allowed", "The webhook URL is not allowed", 422
    ),
    errors.ValidationFailed: VALIDATION,
    errors.NotFound: ProblemType("not-found", "Not found", 404),
    errors.PermissionDenied: FORBIDDEN,
    errors.EmailAlreadyRegistered: ProblemType("email-taken", "E-mail address already registered", 409),
    errors.InvalidCredentials: ProblemType("invalid-credentials", "Wrong e-mail or password", 401),
    errors.WrongPassword: ProblemType("wrong-password", "Wrong current password", 401),
    errors.TokenRevoked: UNAUTHENTICATED,
    errors.CurrencyMismatch: ProblemType("currency-mismatch", "Currencies cannot be mixed", 409),
    errors.InvalidCursor: ProblemType("invalid-cursor", "The page cursor is not valid", 400),
    orders.InsufficientStock: ProblemType("insufficient-stock", "Not enough stock", 409),
    orders.ItemUnavailable: ProblemType("item-unavailable", "An item is no longer available", 409),
    orders.EmptyCart: ProblemType("empty-cart", "The cart is empty", 409),
    orders.CheckoutInProgress: ProblemType("checkout-in-progress", "A checkout is already running", 409),
    orders.IllegalTransition: ProblemType("order-state-conflict", "The order cannot change like that", 409),
    orders.PaymentDeclined: ProblemType("payment-declined", "Payment declined", 402),
    orders.PaymentGatewayUnavailable: ProblemType(
        "payment-gateway-unavailable", "The payment provider is unavailable", 503
    ),
    errors.InvalidProviderEvent: ProblemType(
        "invalid-provider-event", "The provider event was rejected", 400
    ),
    errors.IdempotencyKeyRequired: ProblemType(
        "idempotency-key-required", "Idempotency-Key header required", 400
    ),
    errors.IdempotencyKeyReused: ProblemType("idempotency-key-reused", "Idempotency-Key reused", 422),
    refunds.OrderNotRefundable: ProblemType("order-not-refundable", "The order cannot be refunded", 409),
    refunds.RefundExceedsBalance: ProblemType(
        "refund-exceeds-balance", "More than what is left of the order", 409
    ),
    refunds.RefundDeclined: ProblemType("refund-declined", "The payment provider refused the refund", 409),
    refunds.RefundPending: ProblemType(
        "refund-pending", "The payment provider did not answer; the refund is pending", 503
    ),
    admin.SelfLockout: ProblemType("self-lockout", "You cannot lock yourself out", 409),
    admin.DeliveryNotRetryable: ProblemType(
        "delivery-not-retryable", "Only pending or failed deliveries are retried", 409
    ),
    admin.LastActiveAdmin: ProblemType("last-active-admin", "The last active admin must stay", 409),
    errors.IdempotentRequestInProgress: ProblemType(
        "idempotent-request-in-progress", "The first request with this key is still running", 409
    ),
}

# Every type this service can answer with, for the OpenAPI description and the docs.
CATALOGUE: tuple[ProblemType, ...] = tuple(
    dict.fromkeys(
        (
            VALIDATION,
            BAD_PARAMETER,
            MALFORMED,
            UNAUTHENTICATED,
            INTERNAL,
            UNAVAILABLE,
            *PROBLEM_TYPES.values(),
        )
    )
)


class Problem(msgspec.Struct, omit_defaults=True):
    """An RFC 9457 problem. `errors` is present for validation problems only."""

    type: str
    title: str
    status: int
    detail: str
    instance: str
    trace_id: str
    errors: list[dict[str, str]] | None = None


def problem_response(
    request: Request[Any, Any, Any],
    status: int,
    *,
    type_uri: str,
    title: str,
    detail: str,
    field_errors: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> Response[Any]:
    body: dict[str, Any] = {
        "type": type_uri,
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
        "trace_id": request.scope.get("state", {}).get("trace_id") or _current_trace_id(),
    }
    if field_errors is not None:
        body["errors"] = field_errors
    if extra:
        body.update(extra)
    if (context := request_context.current()) is not None:  # the session's timeline names the problem
        context.problem_type = type_uri
    return Response(content=body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _current_trace_id() -> str:
    return format(trace.get_current_span().get_span_context().trace_id, "032x")


def domain_error_handler(request: Request[Any, Any, Any], exc: errors.DomainError) -> Response[Any]:
    kind = next(p for cls, p in PROBLEM_TYPES.items() if isinstance(exc, cls))
    field_errors = None
    if isinstance(exc, errors.ValidationFailed):
        field_errors = [{"field": e.field, "message": e.message} for e in exc.errors]
    elif isinstance(exc, errors.InvalidCursor):  # a bad query parameter, named like any other
        field_errors = [
            {"field": "cursor", "message": "is not a cursor of this list; start again without it"}
        ]
    elif isinstance(exc, errors.IdempotencyKeyRequired | errors.IdempotencyKeyReused):  # a bad header, named
        field_errors = [{"field": "Idempotency-Key", "message": exc.detail}]
    headers = {"WWW-Authenticate": "Bearer"} if kind.status == 401 else None
    if isinstance(exc, errors.RateLimited | errors.ServerBusy):
        headers = {"Retry-After": str(exc.retry_after_s)}
    order_id = getattr(exc, "order_id", None)  # where an order was kept, the client learns which
    # An expected kind of failure, but ours (e.g. the payment provider is down). Shedding load is working as
    # designed: a flood must not become a flood of Sentry events.
    if kind.status >= 500 and not isinstance(exc, errors.ServerBusy):
        record_server_error(request, exc)
    detail = exc.detail
    if kind.status >= 500:  # every 5xx gives the reference to quote, like the 500 does
        trace_id = request.scope.get("state", {}).get("trace_id") or _current_trace_id()
        detail = f"{detail} Quote reference {trace_id} if it persists."
    return problem_response(
        request,
        kind.status,
        type_uri=kind.uri,
        title=kind.title,
        detail=detail,
        field_errors=field_errors,
        headers=headers,
        extra={"order_id": order_id} if order_id else None,
    )


def validation_error_handler(request: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    """Litestar's 400 for bodies and parameters that do not fit the schema. A JSON body of the wrong shape
    is a 422 naming every bad field; query, path and header parameters are a 400."""
    extra = [e for e in (exc.extra if isinstance(exc.extra, list) else []) if isinstance(e, dict)]
    if any(e.get("source") == "body" for e in extra):
        field_errors = body_field_errors(request)
        if field_errors is None:
            return problem_response(
                request,
                400,
                type_uri=MALFORMED.uri,
                title=MALFORMED.title,
                detail="A JSON object body is required.",
            )
        return problem_response(
            request,
            422,
            type_uri=VALIDATION.uri,
            title=VALIDATION.title,
            detail="Some fields are not valid; see errors.",
            field_errors=field_errors,
        )
    field_errors = [
        {
            "field": public_name(request, str(e["key"])) if e.get("key") else "request",
            "message": plain(str(e.get("message", "is not valid"))),
        }
        for e in extra
    ]
    return problem_response(
        request,
        400,
        type_uri=BAD_PARAMETER.uri,
        title=BAD_PARAMETER.title,
        detail="Some parameters are not valid; see errors.",
        field_errors=field_errors or [{"field": "request", "message": "is not valid"}],
    )


def http_exception_handler(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    """Plain HTTP errors (unknown route, wrong method, body too large, malformed JSON...)."""
    status = exc.status_code
    if isinstance(exc, MethodNotAllowedException):
        name_the_matched_route(request, exc)
    if status == 404 and isinstance(exc, NotFoundException) and wants_html(request):
        return not_found_page(request)
    detail = exc.detail if isinstance(exc.detail, str) and exc.detail else ""
    # Litestar raises a 400 ClientException from the SerializationException of a body that is not JSON
    # (its message varies: "malformed", "truncated", ...).
    if isinstance(exc, MalformedBody) or (
        status == 400 and (isinstance(exc.__cause__, SerializationException) or "malformed" in detail.lower())
    ):
        return problem_response(
            request,
            400,
            type_uri=MALFORMED.uri,
            title=MALFORMED.title,
            detail=detail if isinstance(exc, MalformedBody) else "The request body is not valid JSON.",
        )
    if status >= 500:
        return internal_error_handler(request, exc)
    if status == 401:
        return problem_response(
            request,
            401,
            type_uri=UNAUTHENTICATED.uri,
            title=UNAUTHENTICATED.title,
            detail=detail or _PLAIN_HTTP[401][1],
            headers={"WWW-Authenticate": "Bearer"},
        )
    if status == 403:
        return problem_response(
            request, 403, type_uri=FORBIDDEN.uri, title=FORBIDDEN.title, detail=detail or _PLAIN_HTTP[403][1]
        )
    title, detail = _PLAIN_HTTP.get(
        status, ("Request not accepted", detail or "The request was not accepted.")
    )
    headers = dict(exc.headers or {})
    return problem_response(
        request, status, type_uri="about:blank", title=title, detail=detail, headers=headers
    )


def name_the_matched_route(request: Request[Any, Any, Any], exc: MethodNotAllowedException) -> None:
    """A 405: the path matched a route, only the method did not. Litestar routes by path and method together,
    so it left `path_template` unset; routing the path again with a method the route allows (its `Allow`)
    gives the template, which the server span, the duration metric, the access line and Sentry then carry,
    as for every other answer of that route (what SREs group by). An unknown path (404) keeps none."""
    scope = request.scope
    allowed = (exc.headers or {}).get("allow", "").split(",")[0].strip()
    if scope.get("path_template") or not allowed:
        return
    try:
        *_, template = request.app.asgi_router.handle_routing(normalize_path(scope["path"]), allowed)
    except HTTPException:
        return
    scope["path_template"] = template


_PLAIN_HTTP: dict[int, tuple[str, str]] = {
    400: ("Bad request", "The request could not be understood."),
    401: ("Sign-in required", "Send a valid bearer token in the Authorization header."),
    403: ("Not allowed", "Your account may not do this."),
    404: ("Not found", "There is nothing at this address. The API is described at /docs."),
    405: ("Method not allowed", "This address does not accept this HTTP method."),
    413: ("Request too large", "The request body is larger than 1 MiB."),
    415: ("Unsupported media type", "Send the body as application/json."),
}


UnavailableReason = Callable[[BaseException], str | None]
"""What the database adapter says of an exception: plain words for the client when it means "the database
cannot serve this now", None otherwise (`market.adapters.db.errors.unavailable_reason`, bound by bootstrap:
HTTP does not import the database adapter)."""


def database_unavailable_handler(
    request: Request[Any, Any, Any], exc: Exception, reason: str
) -> Response[Any]:
    """The database cannot serve this now (a statement or lock timeout, no free connection, SQLite busy, the
    database or its tables gone): a 503 with Retry-After instead of a hang or a 500. Still our failure, so
    it is recorded and reported like any 5xx."""
    event_id = record_server_error(request, exc)
    trace_id = request.scope.get("state", {}).get("trace_id") or _current_trace_id()
    return problem_response(
        request,
        503,
        type_uri=UNAVAILABLE.uri,
        title=UNAVAILABLE.title,
        detail=f"{reason} Try again shortly; quote reference {trace_id} if it persists.",
        headers={"Retry-After": str(RETRY_AFTER_S)},
        extra={"sentry_event_id": event_id},
    )


def internal_error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """Our fault: a generic 500 with the reference, never the exception. The exception is recorded on the
    server span (which is current here), logged with its stack, and reported to Sentry once; the body
    carries both references (`trace_id`, `sentry_event_id`). Driver errors meaning the database cannot
    serve right now are a 503 instead (the app's `unavailable`, from market.adapters.db.errors)."""
    classify: UnavailableReason | None = request.app.state.get("unavailable")
    reason = classify(exc) if classify is not None else None
    if reason is not None:
        return database_unavailable_handler(request, exc, reason)
    event_id = record_server_error(request, exc)
    trace_id = request.scope.get("state", {}).get("trace_id") or _current_trace_id()
    return problem_response(
        request,
        HTTP_500_INTERNAL_SERVER_ERROR,
        type_uri=INTERNAL.uri,
        title=INTERNAL.title,
        detail=f"Sorry, this failed because of a problem on our side. Quote reference {trace_id} to support.",
        extra={"sentry_event_id": event_id},
    )


def record_server_error(request: Request[Any, Any, Any], exc: BaseException) -> str | None:
    """The one place a 5xx is made known: exception event and ERROR status on the server span, an error
    log line with the stack, one Sentry event (id returned)."""
    span = trace.get_current_span()
    span.record_exception(exc)
    span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
    log.error("request failed", exc_info=exc)
    state = request.scope.get("state", {})
    event_id = report_exception(
        exc,
        user=state.get("user"),
        route=request.scope.get("path_template"),
        method=request.method,
        trace_id=state.get("trace_id"),
        span_id=state.get("span_id"),
    )
    if (context := request_context.current()) is not None:
        context.sentry_event_id = event_id
    return event_id


def exception_handlers() -> dict[Any, Any]:
    return {
        errors.DomainError: _for_people(domain_error_handler),
        ValidationException: _for_people(validation_error_handler),
        HTTPException: _for_people(http_exception_handler),
        Exception: _for_people(internal_error_handler),
    }


_Handler = Callable[[Request[Any, Any, Any], Any], Response[Any]]


def _for_people(handler: _Handler) -> _Handler:
    """`handler` answering a browser in the admin pages or the seller area with a page saying the same (title,
    detail, status, headers such as Retry-After) instead of the problem JSON. Only here, where an error becomes
    the response: the handlers also build problems that are stored and replayed (idempotent refunds)."""

    def answer(request: Request[Any, Any, Any], exc: Any) -> Response[Any]:
        response = handler(request, exc)
        if response.media_type != PROBLEM_JSON or not error_page_wanted(request):
            return response
        problem = response.content
        headers = {name: value for name, value in response.headers.items() if name.lower() == "retry-after"}
        return error_page(request, response.status_code, problem["title"], problem["detail"], headers)

    return answer
