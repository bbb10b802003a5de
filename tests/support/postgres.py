"""The PostgreSQL server the tests create their databases on (`MARKET_TEST_POSTGRES_URL`)."""

from __future__ import annotations

import asyncio
import os

import asyncpg

POSTGRES_ADMIN_URL = os.environ.get(
    "MARKET_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def admin_execute(sql: str) -> None:
    """Run one statement (e.g. CREATE/DROP DATABASE) on the admin connection."""

    async def run() -> None:
        conn = await asyncpg.connect(POSTGRES_ADMIN_URL)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


def postgres_url(database: str) -> str:
    """The URL of `database` on the same server as the admin connection."""
    base, _, _ = POSTGRES_ADMIN_URL.rpartition("/")
    return f"{base}/{database}"
