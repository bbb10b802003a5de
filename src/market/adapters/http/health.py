"""Liveness and readiness."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from litestar import Request, Response, get

from market.adapters.db.database import Database

from .openapi import problems
from .problems import UNAVAILABLE, problem_response

READY_TIMEOUT_S = 2.0


class Health(msgspec.Struct):
    status: str


@get("/health/live", operation_id="live", tags=["operations"], responses=problems())
async def live() -> Health:
    """The process is up and serving."""
    return Health("ok")


@get("/health/ready", operation_id="ready", tags=["operations"], responses=problems(503))
async def ready(request: Request[Any, Any, Any], database: Database) -> Response[Any]:
    """Ready to serve: the database answers within 2 s."""
    try:
        await asyncio.wait_for(database.ping(), READY_TIMEOUT_S)
    except Exception:
        return problem_response(
            request,
            503,
            type_uri=UNAVAILABLE.uri,
            title=UNAVAILABLE.title,
            detail="The database is not answering; requests that need it will fail until it is back.",
        )
    return Response(Health("ok"))
