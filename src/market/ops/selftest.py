"""The monitoring self-test: produce one signal on purpose, to prove a deployment's monitoring end to end.
The same whoever asks: `POST /api/v1/admin/test-monitoring` and the admin dashboard's buttons."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Literal, get_args

from opentelemetry import trace

from market.application.admin import RecordAdminAction
from market.application.ports import AnalyticsLog, ChargeRequest, Clock, EventPublisher, PaymentGateway
from market.domain.admin import AuditAction, AuditTarget
from market.domain.events import PaymentAttempted
from market.domain.money import Money
from market.domain.users import User
from market.telemetry import names
from market.telemetry.sentry import report_message

SLOW_SPAN_S = 2.6

MonitoringKind = Literal["error", "slow", "payment_failure", "message"]
MONITORING_KINDS: tuple[MonitoringKind, ...] = get_args(MonitoringKind)


class MonitoringTestError(RuntimeError):
    """Raised on purpose by the monitoring self-test of kind `error`."""


async def produce_monitoring_signal(
    kind: MonitoringKind,
    *,
    sandbox_gateway: PaymentGateway,
    events: EventPublisher,
    user: User,
    route: str,
    method: str,
    analytics: AnalyticsLog | None = None,
    clock: Clock | None = None,
) -> str | None:
    """Produce exactly one monitoring signal: `error` raises MonitoringTestError, for the caller to handle as
    any unexpected error; `slow` makes a span of at least 2.5 s; `payment_failure` runs a declined charge
    through the sandbox gateway; `message` sends an info-level Sentry message. Returns the Sentry event id of
    the message (None for the other kinds, or when Sentry is off). `route` and `method` name the caller's
    endpoint in the error and the message."""
    if kind == "error":
        raise MonitoringTestError(f"Test error raised on purpose by {method} {route}.")
    if kind == "slow":
        with trace.get_tracer(__name__).start_as_current_span(names.SPAN_MONITORING_SLOW):
            await asyncio.sleep(SLOW_SPAN_S)
    elif kind == "payment_failure":
        order_id = str(uuid.uuid4())
        result = await sandbox_gateway.charge(
            ChargeRequest(order_id, str(uuid.uuid4()), Money(100, "EUR"), "card", "tok_chargeDeclined")
        )
        attempted = [PaymentAttempted(order_id, result.status, "card", Money(100, "EUR"), result.reason)]
        if analytics is not None and clock is not None:  # the payments report counts it, as the metric does
            await analytics.record(attempted, clock.now())
        events.publish(attempted)
    elif kind == "message":
        return report_message(
            f"Test message sent on purpose by {method} {route}.",
            level="info",
            user=user,
            route=route,
            method=method,
        )
    return None


ProduceMonitoringSignal = Callable[..., Awaitable[str | None]]
"""`produce_monitoring_signal` with its ports bound (bootstrap): (kind, *, user, route, method)."""


async def run_monitoring_self_test(
    kind: MonitoringKind,
    *,
    user: User,
    route: str,
    method: str,
    record_admin_action: RecordAdminAction,
    produce_monitoring_signal: ProduceMonitoringSignal,
) -> str | None:
    """The self-test as an admin write, whoever asks (the API route, the dashboard's buttons): its audit entry
    first, committed on its own (the `error` kind fails on purpose after it), then the signal. Returns what
    `produce_monitoring_signal` returns and raises what it raises."""
    await record_admin_action(
        user, AuditAction.MONITORING_TESTED, AuditTarget.MONITORING, kind, {"kind": kind}
    )
    return await produce_monitoring_signal(kind, user=user, route=route, method=method)


RunMonitoringSelfTest = Callable[..., Awaitable[str | None]]
"""`run_monitoring_self_test` with its ports bound (bootstrap): (kind, *, user, route, method)."""
