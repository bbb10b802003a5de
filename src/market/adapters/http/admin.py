"""Admin tools: prove the monitoring pipeline end to end."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any, Literal, get_args

import msgspec
from litestar import Controller, Request, post
from opentelemetry import trace

from market.application.admin import AdminPorts, record_admin_action
from market.application.ports import ChargeRequest
from market.application.services import Services
from market.domain.admin import AuditAction, AuditTarget
from market.domain.events import PaymentAttempted
from market.domain.users import Role, User
from market.telemetry import names
from market.telemetry.sentry import report_message

from .auth import requires
from .openapi import problems

SLOW_SPAN_S = 2.6


MonitoringKind = Literal["error", "slow", "payment_failure", "message"]
MONITORING_KINDS: tuple[MonitoringKind, ...] = get_args(MonitoringKind)


class MonitoringTestError(RuntimeError):
    """Raised on purpose by the monitoring self-test of kind `error`."""


async def produce_monitoring_signal(
    kind: MonitoringKind,
    *,
    services: Services,
    user: User,
    route: str,
    method: str,
    admin: AdminPorts,
) -> str | None:
    """Produce exactly one monitoring signal, the same whoever asks (the API or the admin dashboard):
    `error` raises MonitoringTestError, for the caller to handle as any unexpected error; `slow` makes a span
    of at least 2.5 s; `payment_failure` runs a declined charge through the sandbox gateway; `message` sends
    an info-level Sentry message. Returns the Sentry event id of the message (None for the other kinds, or
    when Sentry is off). `route` and `method` name the caller's endpoint in the error and the message."""
    if kind == "error":
        raise MonitoringTestError(f"Test error raised on purpose by {method} {route}.")
    if kind == "slow":
        with trace.get_tracer(__name__).start_as_current_span(names.SPAN_MONITORING_SLOW):
            await asyncio.sleep(SLOW_SPAN_S)
    elif kind == "payment_failure":
        order_id = str(uuid.uuid4())
        result = await services.sandbox_gateway.charge(
            ChargeRequest(order_id, str(uuid.uuid4()), 100, "EUR", "card", "tok_chargeDeclined")
        )
        services.events.publish(
            [PaymentAttempted(order_id, result.status, "card", 100, "EUR", result.reason)]
        )
    elif kind == "message":
        return report_message(
            f"Test message sent on purpose by {method} {route}.",
            level="info",
            user=user,
            route=route,
            method=method,
        )
    return None


class MonitoringTestBody(msgspec.Struct, forbid_unknown_fields=True):
    kind: MonitoringKind


class MonitoringTestOut(msgspec.Struct):
    kind: str
    trace_id: str
    sentry_event_id: str | None


class AdminController(Controller):
    path = "/admin"
    tags = ["admin"]
    guards = [requires(Role.ADMIN)]

    @post(
        "/test-monitoring",
        operation_id="testMonitoring",
        status_code=200,
        responses=problems(400, 401, 403, 422),
    )
    async def test_monitoring(
        self,
        request: Request[Any, Any, Any],
        data: MonitoringTestBody,
        user: User,
        services: Services,
        admin: AdminPorts,
    ) -> MonitoringTestOut:
        """Produce exactly one monitoring signal, to check a deployment end to end:
        `error` raises a real unhandled exception (the 500 problem carries `trace_id` and `sentry_event_id`);
        `slow` makes a span of at least 2.5 s; `payment_failure` runs a declined charge through the sandbox
        gateway; `message` sends an info-level Sentry message. Each call appends an audit entry first (the
        `error` kind fails on purpose after it)."""
        await record_admin_action(
            user,
            AuditAction.MONITORING_TESTED,
            AuditTarget.MONITORING,
            data.kind,
            {"kind": data.kind},
            ports=admin,
        )
        event_id = await produce_monitoring_signal(
            data.kind,
            services=services,
            user=user,
            route=request.scope.get("path_template") or request.url.path,
            method=request.method,
            admin=admin,
        )
        return MonitoringTestOut(
            kind=data.kind, trace_id=request.scope["state"]["trace_id"], sentry_event_id=event_id
        )
