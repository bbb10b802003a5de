"""A transaction PostgreSQL aborts to break a deadlock is "try again" (a 503 with Retry-After), not a bug's 500:
a real deadlock, made on purpose by two transactions taking two rows in opposite orders."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from market.adapters.db.errors import CONTENDED, database_unavailable

pytestmark = pytest.mark.timeout(60)


async def test_a_deadlock_is_an_unavailability_worth_retrying(fresh_postgres_url):
    first, second = await asyncpg.connect(fresh_postgres_url), await asyncpg.connect(fresh_postgres_url)
    try:
        await first.execute("CREATE TABLE rows_in_a_race (id int PRIMARY KEY, n int)")
        await first.execute("INSERT INTO rows_in_a_race VALUES (1, 0), (2, 0)")
        for connection in (first, second):
            await connection.execute("SET deadlock_timeout = '50ms'")  # the detector runs sooner than its 1 s
            await connection.execute("BEGIN")
        await first.execute("UPDATE rows_in_a_race SET n = n + 1 WHERE id = 1")
        await second.execute("UPDATE rows_in_a_race SET n = n + 1 WHERE id = 2")
        outcomes = await asyncio.gather(
            first.execute("UPDATE rows_in_a_race SET n = n + 1 WHERE id = 2"),
            second.execute("UPDATE rows_in_a_race SET n = n + 1 WHERE id = 1"),
            return_exceptions=True,
        )
        (lost,) = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
        assert isinstance(lost, asyncpg.DeadlockDetectedError)
        found = database_unavailable(lost)
        assert found is not None and found.detail == CONTENDED
    finally:
        await first.close()
        await second.close()
