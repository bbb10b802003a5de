"""`GET /admin/alerts`: the in-process alert rules and their current state."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal, Protocol

import msgspec
from litestar import Controller, Request, get

from market.domain.users import Role
from market.ops.alerting.rules import AlertStatus

from .auth import requires
from .openapi import problems
from .query import strict_request


class AlertBoard(Protocol):
    """What the endpoint reads: the alert monitor (`market.ops.alerting.monitor.AlertMonitor`)."""

    def statuses(self) -> Sequence[AlertStatus]: ...

    @property
    def evaluated_at(self) -> datetime | None: ...


class AlertOut(msgspec.Struct):
    name: str
    severity: Literal["critical", "warning"]
    state: Literal["ok", "firing"]
    value: float | None
    """The rule's current value (a fraction in [0, 1] for rates, seconds otherwise); null when its window saw
    no traffic (or, for `backup_stale`, when backups are not expected)."""
    threshold: float
    """The rule fires while `value` is above this."""
    since: datetime | None
    """When the rule entered its current state; null while it has been `ok` since the service started."""
    description: str

    @classmethod
    def of(cls, status: AlertStatus) -> AlertOut:
        return cls(
            name=status.name,
            severity=status.severity,
            state=status.state,
            value=status.value,
            threshold=status.threshold,
            since=_seconds(status.since),
            description=status.description,
        )


class AlertsOut(msgspec.Struct):
    alerts: list[AlertOut]
    evaluated_at: datetime | None
    """When this process last evaluated the rules; null before the first evaluation."""


class AlertController(Controller):
    path = "/admin/alerts"
    tags = ["admin"]
    guards = [requires(Role.ADMIN)]
    before_request = strict_request  # as every admin list: it takes no query parameter, and says so

    @get(operation_id="listAlerts", responses=problems(400, 401, 403), sync_to_thread=False)
    def list_alerts(self, request: Request[Any, Any, Any]) -> AlertsOut:
        """The alert rules, evaluated in-process every `MARKET_ALERT_EVAL_INTERVAL` (default 15 s) over the
        service's own metrics — the same conditions as the Prometheus alerting rules:

        - `high_error_rate` (critical): share of 5xx responses over 5 min (`/health/*`, `/metrics` excluded)
          > 0.05, with at least 20 requests and 3 errors, for 2 min;
        - `payment_failures` (critical): share of payment attempts failing on the payment system's side
          (gateway error or timeout; declines do not count) over 5 min > 0.10, with at least 10 attempts and
          3 failures, for 5 min;
        - `slow_api` (warning): p95 request duration of the slowest route over 5 min > 2 s, routes with at least
          20 requests, for 5 min;
        - `webhook_failures` (warning): share of failed webhook deliveries (outbound, and authentic inbound
          provider events) over 15 min > 0.01, with at least 20 deliveries and 3 failures, for 5 min; posts that
          fail authentication are not deliveries;
        - `backup_stale` (warning): seconds since the last successful backup > 26 h, for 5 min, checked only when
          backups are expected (`MARKET_BACKUP_SCHEDULE` is set, or a backup has succeeded).

        `MARKET_ALERT_FOR` replaces every hold time. A firing rule resolves once its value has stayed at or below
        80 % of its threshold (or had nothing to measure) for its hold time.
        A window without enough traffic does not fire. Each change of state is notified once (firing, then
        resolved) to `MARKET_ALERT_SLACK_WEBHOOK_URL` and/or by e-mail (`MARKET_ALERT_SMTP_URL`,
        `MARKET_ALERT_EMAIL_TO`). It takes no query parameter: any is a 400 `invalid-parameter` naming it."""
        board: AlertBoard | None = request.app.state.get("alerts")
        if board is None:
            return AlertsOut(alerts=[], evaluated_at=None)
        return AlertsOut(
            alerts=[AlertOut.of(s) for s in board.statuses()], evaluated_at=_seconds(board.evaluated_at)
        )


def _seconds(moment: datetime | None) -> datetime | None:
    return None if moment is None else moment.replace(microsecond=0)
