"""`GET /metrics`: the Prometheus text exposition for operators, or OpenMetrics 1.0 (with exemplars linking to
traces) when the scraper's Accept header asks for `application/openmetrics-text`."""

from __future__ import annotations

import hmac
from typing import Any

from litestar import Request, Response, get
from litestar.exceptions import NotAuthorizedException

from market.telemetry.prometheus import (
    OPENMETRICS_TEXT,
    PROMETHEUS_TEXT,
    MetricsExposition,
    wants_openmetrics,
)

from .openapi import problems


@get(
    "/metrics",
    operation_id="metrics",
    tags=["operations"],
    include_in_schema=True,
    sync_to_thread=False,
    media_type=PROMETHEUS_TEXT,
    responses=problems(401),  # only when MARKET_METRICS_TOKEN is set, so no `security=` requirement
)
def metrics(request: Request[Any, Any, Any]) -> Response[str]:
    """Every instrument of the service, summed over all worker processes, plus `target_info` and the
    process_* figures: Prometheus text format, or OpenMetrics 1.0 (`_created`, exemplars with the trace id,
    `# EOF`) when `Accept` names `application/openmetrics-text`. Needs `Authorization: Bearer
    <MARKET_METRICS_TOKEN>` when that variable is set."""
    expected: str | None = request.app.state["metrics_token"]
    if expected:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected.encode()):
            raise NotAuthorizedException("Send the metrics bearer token.")
    exposition: MetricsExposition = request.app.state["metrics"]
    if wants_openmetrics(request.headers.get("accept")):
        return Response(exposition.render(openmetrics=True), media_type=OPENMETRICS_TEXT)
    return Response(exposition.render(), media_type=PROMETHEUS_TEXT)
