"""Liveness and readiness."""

from __future__ import annotations

import asyncio
from typing import Any, Protocol, runtime_checkable

import msgspec
from litestar import Request, Response, get
from litestar.di import NamedDependency

from .openapi import problems
from .problems import RETRY_AFTER_S, UNAVAILABLE, problem_response

READY_TIMEOUT_S = 2.0
NOT_ANSWERING = "The database is not answering; requests that need it will fail until it is back."


@runtime_checkable  # Litestar checks an injected dependency against its annotation
class Readiness(Protocol):
    """What `/health/ready` asks: the database adapter (`market.adapters.db.database.Database`), bound by
    bootstrap; HTTP does not import the database adapter."""

    async def unready_reason(self) -> str | None:
        """None when requests can be served; otherwise what is wrong, in plain words."""
        ...


class Health(msgspec.Struct):
    status: str


@get("/health/live", operation_id="live", tags=["operations"], responses=problems())
async def live() -> Health:
    """The process is up and serving."""
    return Health("ok")


@get("/health/ready", operation_id="ready", tags=["operations"], responses=problems(503))
async def ready(request: Request[Any, Any, Any], database: NamedDependency[Readiness]) -> Response[Any]:
    """Ready to serve: within 2 s the database answers, its schema is at this code's migration head and
    every table the code needs exists. Otherwise a 503 problem saying which."""
    try:
        reason = await asyncio.wait_for(database.unready_reason(), READY_TIMEOUT_S)
    except Exception:
        reason = NOT_ANSWERING
    if reason is None:
        return Response(Health("ok"))
    return problem_response(
        request,
        503,
        type_uri=UNAVAILABLE.uri,
        title=UNAVAILABLE.title,
        detail=reason,
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )
