"""Admin tools: prove the monitoring pipeline end to end."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, Request, post
from litestar.di import NamedDependency
from litestar.params import JSONBody

from market.domain.users import Role, User
from market.ops.selftest import MonitoringKind, RunMonitoringSelfTest

from .auth import requires
from .openapi import problems


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
        data: JSONBody[MonitoringTestBody],
        user: NamedDependency[User],
        run_monitoring_self_test: NamedDependency[RunMonitoringSelfTest],
    ) -> MonitoringTestOut:
        """Produce exactly one monitoring signal, to check a deployment end to end:
        `error` raises a real unhandled exception (the 500 problem carries `trace_id` and `sentry_event_id`);
        `slow` makes a span of at least 2.5 s; `payment_failure` runs a declined charge through the sandbox
        gateway; `message` sends an info-level Sentry message. Each call appends an audit entry first (the
        `error` kind fails on purpose after it)."""
        event_id = await run_monitoring_self_test(
            data.kind,
            user=user,
            route=request.scope.get("path_template") or request.url.path,
            method=request.method,
        )
        return MonitoringTestOut(
            kind=data.kind, trace_id=request.scope["state"]["trace_id"], sentry_event_id=event_id
        )
