"""`GET /metrics`: Prometheus text exposition for operators."""

from __future__ import annotations

import hmac
from typing import Any

from litestar import Request, Response, get
from litestar.exceptions import NotAuthorizedException

from market.telemetry.prometheus import MetricsExposition

from .openapi import problems

PROMETHEUS_TEXT = "text/plain; version=0.0.4"  # Litestar adds the charset


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
    """Every instrument of the service in Prometheus text format, summed over all worker processes.
    Needs `Authorization: Bearer <MARKET_METRICS_TOKEN>` when that variable is set."""
    expected: str | None = request.app.state["metrics_token"]
    if expected:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected.encode()):
            raise NotAuthorizedException("Send the metrics bearer token.")
    exposition: MetricsExposition = request.app.state["metrics"]
    return Response(exposition.render(), media_type=PROMETHEUS_TEXT)
