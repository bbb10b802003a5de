"""Admin tools: prove the monitoring pipeline end to end."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any, Literal

import msgspec
from litestar import Controller, Request, post
from opentelemetry import trace

from market.application.ports import ChargeRequest
from market.application.services import Services
from market.domain.events import PaymentAttempted
from market.domain.users import Role, User
from market.telemetry.sentry import report_message

from .auth import requires
from .openapi import problems

SLOW_SPAN_S = 2.6


class MonitoringTestError(RuntimeError):
    """Raised on purpose by `POST /admin/test-monitoring {"kind": "error"}`."""


class MonitoringTestBody(msgspec.Struct, forbid_unknown_fields=True):
    kind: Literal["error", "slow", "payment_failure", "message"]


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
        self, request: Request[Any, Any, Any], data: MonitoringTestBody, user: User, services: Services
    ) -> MonitoringTestOut:
        """Produce exactly one monitoring signal, to check a deployment end to end:
        `error` raises a real unhandled exception (the 500 problem carries `trace_id` and `sentry_event_id`);
        `slow` makes a span of at least 2.5 s; `payment_failure` runs a declined charge through the sandbox
        gateway; `message` sends an info-level Sentry message."""
        trace_id = request.scope["state"]["trace_id"]
        event_id: str | None = None
        if data.kind == "error":
            raise MonitoringTestError("Test error raised on purpose by POST /api/v1/admin/test-monitoring.")
        if data.kind == "slow":
            with trace.get_tracer(__name__).start_as_current_span("monitoring.slow"):
                await asyncio.sleep(SLOW_SPAN_S)
        elif data.kind == "payment_failure":
            order_id = str(uuid.uuid4())
            result = await services.sandbox_gateway.charge(
                ChargeRequest(order_id, str(uuid.uuid4()), 100, "EUR", "card", "tok_chargeDeclined")
            )
            services.events.publish(
                [PaymentAttempted(order_id, result.status, "card", 100, "EUR", result.reason)]
            )
        elif data.kind == "message":
            event_id = report_message(
                "Test message sent on purpose by POST /api/v1/admin/test-monitoring.",
                level="info",
                user=user,
                route=request.scope.get("path_template"),
                method=request.method,
            )
        return MonitoringTestOut(kind=data.kind, trace_id=trace_id, sentry_event_id=event_id)
