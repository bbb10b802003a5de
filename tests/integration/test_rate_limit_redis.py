"""The rate-limit counter on a real Redis (127.0.0.1:6379, or MARKET_TEST_REDIS_URL): hits from separate clients,
as separate workers and replicas make them, are all counted."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from market.adapters.security.limits import CountingRedisStore, Limiter
from market.config import Rate
from market.domain.errors import RateLimited

REDIS_URL = os.environ.get("MARKET_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
async def namespace() -> AsyncIterator[str]:
    """A key prefix of this test's own, deleted afterwards."""
    name = f"market-test-{uuid.uuid4().hex[:12]}"
    yield name
    redis = Redis.from_url(REDIS_URL)
    keys = [key async for key in redis.scan_iter(match=f"{name}:*")]
    if keys:
        await redis.delete(*keys)
    await redis.aclose()


async def test_hits_from_separate_redis_clients_share_one_exact_count(namespace):
    stores = [CountingRedisStore(Redis.from_url(REDIS_URL), namespace=namespace) for _ in range(2)]
    limiters = [Limiter(store) for store in stores]
    try:
        outcomes = await asyncio.gather(
            *(limiters[n % 2].hit("ip:sign-in:10.0.0.1", Rate(10, 60), "Too many.") for n in range(60)),
            return_exceptions=True,
        )
    finally:
        for store in stores:
            await store.close()
    assert sum(o is None for o in outcomes) == 10
    refusals = [o for o in outcomes if o is not None]
    assert all(isinstance(o, RateLimited) and 1 <= o.retry_after_s <= 60 for o in refusals)


async def test_the_window_expires_in_redis_so_counters_do_not_pile_up(namespace):
    redis = Redis.from_url(REDIS_URL)
    store = CountingRedisStore(redis, namespace=namespace)
    try:
        count, remaining = await store.increment("k", 30)
        assert count == 1 and 29 <= remaining <= 30
        assert 0 < await redis.pttl(f"{namespace}:k") <= 30_000
        await Limiter(store).clear("k")
        assert await redis.exists(f"{namespace}:k") == 0
    finally:
        await store.close()


async def test_a_hit_taken_back_in_redis_frees_its_place_and_never_outlives_the_window(namespace):
    redis = Redis.from_url(REDIS_URL)
    store = CountingRedisStore(redis, namespace=namespace)
    limiter = Limiter(store)
    try:
        await limiter.hit("k", Rate(1, 60), "Too many.")
        await limiter.take_back("k")
        await limiter.hit("k", Rate(1, 60), "Too many.")
        with pytest.raises(RateLimited):
            await limiter.hit("k", Rate(1, 60), "Too many.")
        await limiter.take_back("gone")  # no window: nothing is created
        assert await redis.exists(f"{namespace}:gone") == 0
    finally:
        await store.close()
