"""Every telemetry name the service emits, declared once. Code and tests import them from here;
docs/TELEMETRY.md is the contract these names follow. Standard keys come from opentelemetry.semconv (its
_incubating part for session.id and enduser.id, not yet stable there); tests pin their values to the contract,
so that an upgrade of the conventions package cannot rename what the service emits."""

from __future__ import annotations

from opentelemetry.semconv._incubating.attributes import enduser_attributes, session_attributes
from opentelemetry.semconv.attributes import (
    client_attributes,
    db_attributes,
    deployment_attributes,
    error_attributes,
    http_attributes,
    server_attributes,
    service_attributes,
    url_attributes,
    user_agent_attributes,
)
from opentelemetry.semconv.metrics import db_metrics, http_metrics

# --- Resource -------------------------------------------------------------------------------------------
SERVICE_NAME = service_attributes.SERVICE_NAME
SERVICE_VERSION = service_attributes.SERVICE_VERSION
SERVICE_INSTANCE_ID = service_attributes.SERVICE_INSTANCE_ID
DEPLOYMENT_ENVIRONMENT = deployment_attributes.DEPLOYMENT_ENVIRONMENT_NAME

# --- HTTP server span attributes (OpenTelemetry semantic conventions) -----------------------------------
HTTP_REQUEST_METHOD = http_attributes.HTTP_REQUEST_METHOD
HTTP_REQUEST_METHOD_ORIGINAL = (
    http_attributes.HTTP_REQUEST_METHOD_ORIGINAL
)  # only when the method is recorded as _OTHER
# The semantic conventions' known methods (case-sensitive); any other is recorded as _OTHER, so that a client
# cannot mint label values, span names or log fields by sending made-up methods.
HTTP_METHODS = frozenset({"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"})
HTTP_METHOD_OTHER = "_OTHER"
HTTP_ROUTE = http_attributes.HTTP_ROUTE
HTTP_RESPONSE_STATUS_CODE = http_attributes.HTTP_RESPONSE_STATUS_CODE
URL_PATH = url_attributes.URL_PATH
URL_SCHEME = url_attributes.URL_SCHEME
USER_AGENT_ORIGINAL = user_agent_attributes.USER_AGENT_ORIGINAL
CLIENT_ADDRESS = client_attributes.CLIENT_ADDRESS
SESSION_ID = session_attributes.SESSION_ID
SENTRY_SESSION_CONTEXT = "session"  # Sentry event context {id, url}: the session page, one click away
SESSION_PAGE_URL = "session.url"  # Sentry tag: the admin page of the session's timeline
FUNNEL_STEP = "market.funnel.step"  # browsed, carted, checkout_started, paid
STATISTIC = "market.statistic"  # median, p95
ENDUSER_ID = enduser_attributes.ENDUSER_ID
USER_ROLE = "market.user.role"

# --- Database client spans -------------------------------------------------------------------------------
DB_SYSTEM_NAME = db_attributes.DB_SYSTEM_NAME
DB_OPERATION_NAME = db_attributes.DB_OPERATION_NAME
DB_QUERY_TEXT = db_attributes.DB_QUERY_TEXT
DB_NAMESPACE = db_attributes.DB_NAMESPACE
DB_COLLECTION_NAME = db_attributes.DB_COLLECTION_NAME  # the table
DB_QUERY_SUMMARY = db_attributes.DB_QUERY_SUMMARY  # `{operation} {table}`, also the span name
DB_RESPONSE_STATUS_CODE = db_attributes.DB_RESPONSE_STATUS_CODE  # SQLSTATE, on failed statements

# --- Business attributes ---------------------------------------------------------------------------------
ORDER_ID = "market.order.id"
ORDER_TOTAL_CENTS = "market.order.total_cents"
ORDER_CURRENCY = "market.order.currency"
CART_LINE_COUNT = "market.cart.line_count"
PAYMENT_PROVIDER = "market.payment.provider"
PAYMENT_METHOD = "market.payment.method"
PAYMENT_OUTCOME = "market.payment.outcome"
REFUND_REASON = "market.refund.reason"  # a RefundReason value (bounded): requested_by_customer, duplicate...
REFUND_AMOUNT_CENTS = "market.refund.amount_cents"
REFUND_ID = "market.refund.id"
REFUND_OUTCOME = "market.refund.outcome"  # succeeded, pending, or the refusing error's class name
SEARCH_OUTCOME = "market.search.outcome"
CART_ACTION = "market.cart.action"
WEBHOOK_DIRECTION = "market.webhook.direction"
WEBHOOK_OUTCOME = "market.webhook.outcome"
# missing_signature, malformed, stale_signature, bad_signature
WEBHOOK_REJECTION_REASON = "market.webhook.rejection.reason"
RATE_LIMIT_BUCKET = "market.rate_limit.bucket"
"""Which limit refused: a route bucket (`sign-in`, `sign-in-burst`, `register`, `checkout`), `account`,
`sign-in-concurrency` or `password-hashing`."""
WEBHOOK_EVENT_TYPE = "market.webhook.event_type"
WEBHOOK_DELIVERY_ID = "market.webhook.delivery_id"  # spans and logs only, never a metric attribute
WEBHOOK_ATTEMPT = "market.webhook.attempt"  # 1 for the first attempt of a delivery
BACKUP_OUTCOME = "market.backup.outcome"
BACKUP_SIZE = "market.backup.size"  # bytes of the archive written
ITEM_ID = "market.item.id"
SEARCH_RESULT_COUNT = "market.search.result_count"
CART_QUANTITY_DELTA = "market.cart.quantity_delta"
CHECKOUT_OUTCOME = "market.checkout.outcome"  # the order's status, or the exception's class name
PAYMENT_EVENT_TYPE = "market.payment.event_type"  # payment.succeeded, payment.failed, payment.refunded
PAYMENT_EVENT_OUTCOME = "market.payment.event_outcome"
PROBE_OUTCOME = "market.probe.outcome"  # `success` (a 2xx in time) or `failure` (anything else)
TELEMETRY_SIGNAL = "market.telemetry.signal"  # `spans`, `sentry_events` or `session`: what was dropped

# --- Outgoing seller webhooks: one CLIENT span per attempt (HTTP client semantic conventions) -------------
SPAN_WEBHOOK_DELIVER = "webhook deliver"
URL_FULL = (
    url_attributes.URL_FULL
)  # always through domain.redaction.safe_url: no credentials, query or fragment
SERVER_ADDRESS = server_attributes.SERVER_ADDRESS
SERVER_PORT = server_attributes.SERVER_PORT
ERROR_TYPE = error_attributes.ERROR_TYPE

# --- Spans of use cases and jobs (INTERNAL) ---------------------------------------------------------------
SPAN_BACKUP_CREATE = "backup.create"
SPAN_CHECKOUT_PLACE_ORDER = "checkout.place_order"
SPAN_PAYMENT_WEBHOOK_APPLY = "payment.webhook.apply"  # linked to the provider's trace when it sent one
SPAN_ORDER_REFUND = "order.refund"  # an admin refunds (part of) an order
SPAN_MONITORING_SLOW = "monitoring.slow"  # the admin's deliberately slow endpoint, to test latency alerts

# --- Payment provider calls (CLIENT spans) ---------------------------------------------------------------
SPAN_PAYMENT_CHARGE = "payment charge"
SPAN_PAYMENT_LOOKUP = "payment lookup"
SPAN_PAYMENT_REFUND = "payment refund"

# --- Span events for business events ---------------------------------------------------------------------
EVENT_ITEM_VIEWED = "market.item.viewed"
EVENT_SEARCH_PERFORMED = "market.search.performed"
EVENT_ITEM_LISTED = "market.item.listed"
EVENT_USER_REGISTERED = "market.user.registered"
EVENT_CART_ITEM_ADDED = "market.cart.item_added"
EVENT_CART_ITEM_REMOVED = "market.cart.item_removed"
EVENT_CHECKOUT_STARTED = "market.checkout.started"
EVENT_PAYMENT_ATTEMPTED = "market.payment.attempted"
EVENT_ORDER_PAID = "market.order.paid"
EVENT_ORDER_REFUNDED = "market.order.refunded"
EVENT_PAYMENT_CAPTURED_AFTER_FAILURE = "market.payment.captured_after_failure"
EVENT_WEBHOOK_REJECTED = "market.webhook.rejected"

# --- Metrics: (name, unit, description) ------------------------------------------------------------------
HTTP_SERVER_REQUEST_DURATION = (
    http_metrics.HTTP_SERVER_REQUEST_DURATION,
    "s",
    "Duration of HTTP server requests.",
)
DB_CLIENT_OPERATION_DURATION = (
    db_metrics.DB_CLIENT_OPERATION_DURATION,
    "s",
    "Duration of database client operations, by system, operation and table.",
)
ITEM_VIEWS = ("market.item.views", "{view}", "Item detail pages served.")
SEARCH_QUERIES = ("market.search.queries", "{query}", "Catalog searches, by whether they found anything.")
CART_CHANGES = ("market.cart.changes", "{change}", "Cart lines added or removed.")
CHECKOUT_STARTED = ("market.checkout.started", "{checkout}", "Checkouts started.")
ORDERS_COMPLETED = ("market.orders.completed", "{order}", "Orders paid.")
REFUNDS = ("market.refunds", "{refund}", "Refunds that went through (partial or full), by reason.")
REFUNDS_STUCK = (
    "market.refunds.stuck",
    "{refund}",
    "Refunds still pending past the provider's idempotency window (24 h): the background sweep no longer asks the "
    "provider about them (asking again could refund twice), so an admin must. Set by each reconciliation pass.",
)
PAYMENT_ATTEMPTS = ("market.payment.attempts", "{attempt}", "Payment attempts, by outcome and method.")
PAYMENT_AMOUNT = ("market.payment.amount", "{cent}", "Amounts of payment attempts, in minor units.")
PAYMENT_CAPTURED_AFTER_FAILURE = (
    "market.payment.captured_after_failure",
    "{event}",
    "Provider payment.succeeded events for orders already payment_failed: money taken for an order we will not "
    "fulfil (its stock released). Each needs a person to refund or fulfil it; alert on any increase.",
)
WEBHOOK_DELIVERIES = (
    "market.webhook.deliveries",
    "{delivery}",
    "Webhook deliveries, by direction and outcome.",
)
WEBHOOK_REJECTED = (
    "market.webhook.rejected",
    "{request}",
    "Posts to the provider webhook that failed authentication (not deliveries, not failures), by reason.",
)
RATE_LIMIT_REFUSED = (
    "market.rate_limit.refused",
    "{request}",
    "Requests refused by an abuse limit (429) or the password-hashing budget (503), by bucket.",
)
# Business gauges, refreshed every minute from the analytics reports over the last 24 hours.
FUNNEL_SESSIONS = (
    "market.funnel.sessions",
    "{session}",
    "Sessions in the last 24 h that reached each funnel step (and every step before it), by step.",
)
CART_ABANDONMENT_RATE = (
    "market.cart.abandonment_rate",
    "1",
    "Share of the last 24 h's carts with items that were abandoned (no checkout within the abandon window).",
)
SEARCH_SUCCESS_RATE = (
    "market.search.success_rate",
    "1",
    "Share of the last 24 h's searches that had results and were followed, in the same session, by an item view "
    "or cart add within 30 min: the search report's success_rate (one definition, domain/analytics.py).",
)
SESSION_DURATION = (
    "market.session.duration",
    "s",
    "Duration of the last 24 h's sessions (first to last event), by statistic: median or p95.",
)
BACKUP_RUNS = ("market.backup.runs", "{run}", "Database backup runs, by outcome.")
BACKUP_LAST_SUCCESS = ("market.backup.last_success", "s", "Unix time of the last successful backup.")
TELEMETRY_DROPPED = (
    "market.telemetry.dropped",
    "{item}",
    "Spans and Sentry events given up on (queue full, export failed, rate limited), by signal.",
)

# The synthetic availability probe: the service requests its own public URL (MARKET_PROBE_URL) every
# MARKET_PROBE_INTERVAL, so that an outage with no traffic still reads as down (docs/MONITORING-SETUP.md).
PROBE_CHECKS = (
    "market.probe.checks",
    "{check}",
    "Synthetic availability probes of the service's public URL, by outcome (success: a 2xx within the timeout).",
)
PROBE_DURATION = ("market.probe.duration", "s", "Duration of the synthetic availability probes.")
PROBE_SUCCESS = (
    "market.probe.success",
    "1",
    "1 when the newest synthetic availability probe succeeded, 0 when it failed (blackbox exporter's probe_success).",
)
# --- Headers ---------------------------------------------------------------------------------------------
TRACERESPONSE_HEADER = "traceresponse"
SESSION_HEADER = "x-session-id"

INSTRUMENTATION_SCOPE = "market"

NO_EXEMPLAR_KEY = "market.no_exemplar"
"""A context entry of ours only (never exported): marks a context with no span, for measurements that must not
offer an exemplar (metrics.NO_EXEMPLAR)."""
