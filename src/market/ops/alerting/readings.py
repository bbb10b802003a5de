"""What the alert rules read, taken from the service's own cumulative metrics (the data behind `/metrics`:
this worker's live figures plus its sibling workers' latest snapshots) and from the newest backup archive."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import replace

from market.ops.alerting.rules import Reading
from market.telemetry import names
from market.telemetry.prometheus import MetricsExposition, Snapshot, merge, prometheus_name

HTTP_DURATION = prometheus_name(*names.HTTP_SERVER_REQUEST_DURATION[:2], "histogram")
PAYMENT_ATTEMPTS = prometheus_name(*names.PAYMENT_ATTEMPTS[:2], "counter")
WEBHOOK_DELIVERIES = prometheus_name(*names.WEBHOOK_DELIVERIES[:2], "counter")
BACKUP_LAST_SUCCESS = prometheus_name(*names.BACKUP_LAST_SUCCESS[:2], "gauge")


def _label(attribute: str) -> str:
    return attribute.replace(".", "_")  # as the exposition spells attribute names


STATUS_CODE = _label(names.HTTP_RESPONSE_STATUS_CODE)
ROUTE = _label(names.HTTP_ROUTE)
OPERATIONAL_ROUTES = re.compile(r"/health/.*|/metrics")
"""Routes left out of the error-rate and latency SLIs, as the recording rules' `http_route!~"/health/.*|/metrics"`
(probes and scrapes would otherwise dilute the error ratio)."""
PAYMENT_SYSTEM_FAILURE = "error"
"""The payment-attempt outcome of a failure on the payment system's side (gateway error or timeout)."""
PAYMENT_DECLINED = "declined"
PAYMENT_OUTCOME = _label(names.PAYMENT_OUTCOME)
WEBHOOK_OUTCOME = _label(names.WEBHOOK_OUTCOME)


def _samples(snap: Snapshot, family: str) -> list[tuple[str, dict[str, str], float]]:
    """(suffix, labels, value) of every sample of one metric family."""
    out = []
    for key, value in snap.get(family, {}).get("samples", {}).items():
        suffix, labels = json.loads(key)
        out.append((suffix, dict(labels), float(value)))
    return out


def reading_from_snapshot(snap: Snapshot) -> Reading:
    requests = server_errors = 0.0
    routes: dict[str, dict[float, float]] = {}
    for suffix, labels, value in _samples(snap, HTTP_DURATION):
        route = labels.get(ROUTE, "")
        if OPERATIONAL_ROUTES.fullmatch(route):
            continue
        if suffix == "_count":
            requests += value
            if labels.get(STATUS_CODE, "").startswith("5"):
                server_errors += value
        elif suffix == "_bucket":
            bound = math.inf if labels["le"] == "+Inf" else float(labels["le"])
            buckets = routes.setdefault(route, {})
            buckets[bound] = buckets.get(bound, 0.0) + value
    attempts = failed_attempts = declined_attempts = 0.0
    for _, labels, value in _samples(snap, PAYMENT_ATTEMPTS):
        attempts += value
        outcome = labels.get(PAYMENT_OUTCOME)
        if outcome == PAYMENT_SYSTEM_FAILURE:
            failed_attempts += value
        elif outcome == PAYMENT_DECLINED:
            declined_attempts += value
    deliveries = failed_deliveries = 0.0
    for _, labels, value in _samples(snap, WEBHOOK_DELIVERIES):
        deliveries += value
        if labels.get(WEBHOOK_OUTCOME) == "failure":
            failed_deliveries += value
    last_backups = [value for _, _, value in _samples(snap, BACKUP_LAST_SUCCESS)]
    return Reading(
        requests=requests,
        server_errors=server_errors,
        route_duration_buckets=routes,
        payment_attempts=attempts,
        payment_failures=failed_attempts,
        payment_declines=declined_attempts,
        webhook_deliveries=deliveries,
        webhook_failures=failed_deliveries,
        backup_last_success=max(last_backups, default=None),
    )


class ExpositionReadings:
    """Takes a `Reading` from a `MetricsExposition` and, when given, `last_archived` (the Unix time of the
    newest backup archive, or None: `market.ops.backups.manifest.newest_archive_time` over the backup
    directory, bound by the composition root). Blocking (it reads files): call it from a thread."""

    def __init__(
        self, exposition: MetricsExposition, last_archived: Callable[[], float | None] | None = None
    ) -> None:
        self._exposition = exposition
        self._last_archived = last_archived

    def __call__(self) -> Reading:
        snap = merge([*self._exposition.directory.others(), self._exposition.collect()])
        reading = reading_from_snapshot(snap)
        archived = self._last_archived() if self._last_archived else None
        candidates = [t for t in (reading.backup_last_success, archived) if t is not None]
        if not candidates:
            return reading
        return replace(reading, backup_last_success=max(candidates))
