"""The floor for `GET /api/v1/items?limit=20`: a bare Litestar app running the same SQL as market's browse
query on a raw asyncpg pool with asyncpg's defaults (pool of 10, default reset on release), no telemetry,
no Piccolo, no dependency injection, no domain objects.

It returns the same JSON shape as market (`items` plus an opaque `next_cursor`), so both serve comparable
bytes. Run it on the production server stack, as `market serve` runs (uvicorn on uvloop with the httptools
parser, no access log):

    FLOOR_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/db \
        uvicorn --factory benchmarks.floor_app:create_app --loop uvloop --http httptools --no-access-log --port 8001
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from litestar import Litestar, get
from litestar.params import FromQuery

SQL = (
    "SELECT i.id, i.seller_id, i.title, i.description, i.price_cents, i.currency, i.stock, i.category,"
    " i.status, i.created_at, i.updated_at FROM items i WHERE i.status = 'active'"
    " ORDER BY i.created_at DESC, i.id DESC LIMIT $1"
)

_pool: asyncpg.Pool | None = None


@get("/api/v1/items")
async def browse(limit: FromQuery[int] = 20) -> dict[str, Any]:
    assert _pool is not None
    rows = await _pool.fetch(SQL, limit + 1)
    items = [
        {
            "id": str(row["id"]),
            "seller_id": str(row["seller_id"]),
            "title": row["title"],
            "description": row["description"],
            "price_cents": row["price_cents"],
            "currency": row["currency"],
            "stock": row["stock"],
            "category": row["category"],
            "status": row["status"],
            "created_at": row["created_at"],
            "updated_at": row["updated_at"],
        }
        for row in rows[:limit]
    ]
    next_cursor = None
    if len(rows) > limit:
        last = items[-1]
        payload = json.dumps({"t": last["created_at"].isoformat(), "id": last["id"]}).encode()
        next_cursor = base64.urlsafe_b64encode(payload).decode().rstrip("=")
    return {"items": items, "next_cursor": next_cursor}


@asynccontextmanager
async def _lifespan(_: Litestar) -> AsyncIterator[None]:
    global _pool
    _pool = await asyncpg.create_pool(os.environ["FLOOR_DATABASE_URL"])  # asyncpg's defaults
    try:
        yield
    finally:
        await _pool.close()


def create_app() -> Litestar:
    return Litestar(route_handlers=[browse], lifespan=[_lifespan], logging_config=None)
