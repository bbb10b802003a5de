"""Rate limits: fixed-window counters on a Litestar `Store`, in this process's memory or in Redis.

Litestar's own `RateLimitMiddleware` does not fit: it reads the history, then writes it back (atomic only under
an in-process lock, so workers sharing Redis lose each other's hits and a concurrent flood slips past the limit),
it keys every route alike, it answers without `Retry-After`, and it cannot key by an e-mail in the body. So one
small limiter here serves both the per-IP limits of routes and the per-account sign-in limit; the store is the
one switch between memory (one process) and Redis (every worker and replica).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from collections.abc import Callable

from litestar.stores.memory import MemoryStore
from litestar.stores.redis import RedisStore
from redis.asyncio import Redis

from market.config import Rate, RateLimitSettings
from market.domain.errors import RateLimited

log = logging.getLogger(__name__)


class CountingMemoryStore(MemoryStore):
    """Litestar's memory store plus an atomic fixed-window counter (one process only)."""

    __slots__ = ("_counting", "_since_sweep")

    def __init__(self) -> None:
        super().__init__()
        self._counting = asyncio.Lock()
        self._since_sweep = 0

    async def increment(self, key: str, window_s: int) -> tuple[int, float]:
        """Count a hit on `key`: (hits in the current window, seconds until it ends)."""
        async with self._counting:
            now = time.time()
            raw = await self.get(key)
            count, ends = (int(raw.split()[0]), float(raw.split()[1])) if raw else (0, 0.0)
            if ends <= now:
                count, ends = 0, now + window_s
            count += 1
            await self.set(key, f"{count} {ends}", expires_in=math.ceil(ends - now))
            self._since_sweep += 1
            if self._since_sweep >= 1000:  # expired windows of one-off clients would otherwise pile up
                self._since_sweep = 0
                await self.delete_expired()
            return count, ends - now

    async def decrement(self, key: str) -> None:
        """Take back one hit on `key` (nothing when its window has ended)."""
        async with self._counting:
            now = time.time()
            raw = await self.get(key)
            if raw is None:
                return
            count, ends = int(raw.split()[0]), float(raw.split()[1])
            if ends > now and count > 0:
                await self.set(key, f"{count - 1} {ends}", expires_in=math.ceil(ends - now))

    async def close(self) -> None:
        """Nothing to release."""


# INCR and the window's expiry in one step, so that hits from any number of processes are all counted.
_INCREMENT = b"""
local count = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
    redis.call('PEXPIRE', KEYS[1], ARGV[1])
    ttl = tonumber(ARGV[1])
end
return {count, ttl}
"""


# A hit taken back, unless its window has ended (a DECR would then start a key that never expires).
_DECREMENT = b"""
if redis.call('EXISTS', KEYS[1]) == 1 then
    redis.call('DECR', KEYS[1])
end
"""


class CountingRedisStore(RedisStore):
    """Litestar's Redis store plus an atomic fixed-window counter shared by every process using the Redis."""

    __slots__ = ("_decrement", "_increment")

    def __init__(self, redis: Redis, namespace: str, handle_client_shutdown: bool = True) -> None:
        super().__init__(redis, namespace=namespace, handle_client_shutdown=handle_client_shutdown)
        self._increment = redis.register_script(_INCREMENT)
        self._decrement = redis.register_script(_DECREMENT)

    async def increment(self, key: str, window_s: int) -> tuple[int, float]:
        """Count a hit on `key`: (hits in the current window, seconds until it ends)."""
        count, ttl_ms = await self._increment(keys=[self._make_key(key)], args=[window_s * 1000])
        return int(count), int(ttl_ms) / 1000

    async def decrement(self, key: str) -> None:
        """Take back one hit on `key` (nothing when its window has ended)."""
        await self._decrement(keys=[self._make_key(key)])

    async def close(self) -> None:
        """Close the Redis client's connections."""
        await self._redis.aclose()


CountingStore = CountingMemoryStore | CountingRedisStore


def build_store(settings: RateLimitSettings) -> CountingStore:
    """Redis when MARKET_REDIS_URL is set (short timeouts: a slow Redis must not hold up sign-ins), else memory."""
    if not settings.redis_url:
        return CountingMemoryStore()
    redis = Redis.from_url(settings.redis_url, socket_timeout=0.5, socket_connect_timeout=0.5)
    return CountingRedisStore(redis, namespace=f"{settings.redis_prefix}:limits")


class Limiter:
    """Fixed-window limits on a counting store. A store that cannot be reached lets requests through (logged):
    an outage of Redis must not stop every sign-in and checkout."""

    def __init__(self, store: CountingStore, on_refused: Callable[[str], None] | None = None) -> None:
        """`on_refused(bucket)` counts each refusal (the `market.rate_limit.refused` metric)."""
        self.store = store
        self.on_refused = on_refused

    async def hit(self, key: str, rate: Rate, detail: str, *, bucket: str = "other") -> None:
        """Count one hit on `key`; raises RateLimited when it is over `rate` (counted as a refusal in
        `bucket`)."""
        try:
            count, remaining_s = await self.store.increment(key, rate.window_s)
        except Exception:  # any failure of the store: fail open, but say so
            log.warning("rate limit store unavailable; request allowed", exc_info=True)
            return
        if count > rate.count:
            self.refused(bucket)
            raise RateLimited(max(1, math.ceil(remaining_s)), detail)

    def refused(self, bucket: str) -> None:
        """Count a refusal in `bucket` (a bounded set of names: the route buckets, `account`, ...)."""
        if self.on_refused is not None:
            self.on_refused(bucket)

    async def take_back(self, key: str) -> None:
        """Uncount one hit on `key` (a request that was not decided)."""
        try:
            await self.store.decrement(key)
        except Exception:  # as in hit(): a store outage must not fail the request
            log.warning("rate limit store unavailable; hit not taken back", exc_info=True)

    async def clear(self, key: str) -> None:
        try:
            await self.store.delete(key)
        except Exception:  # as in hit(): a store outage must not fail the request
            log.warning("rate limit store unavailable; counter not cleared", exc_info=True)

    async def close(self) -> None:
        await self.store.close()


class StoreSignInThrottle:
    """The per-account sign-in limit (SignInThrottle) on the shared limiter. Accounts are keyed by a digest of
    the e-mail, so that addresses do not sit in Redis in clear."""

    def __init__(self, limiter: Limiter, rate: Rate) -> None:
        self._limiter = limiter
        self._rate = rate

    @staticmethod
    def _key(account: str) -> str:
        return "account:" + hashlib.sha256(account.encode()).hexdigest()[:32]

    async def attempt(self, account: str) -> None:
        await self._limiter.hit(
            self._key(account),
            self._rate,
            "Too many failed sign-ins for this account; it is locked for now.",
            bucket="account",
        )

    async def succeeded(self, account: str) -> None:
        await self._limiter.clear(self._key(account))

    async def undecided(self, account: str) -> None:
        await self._limiter.take_back(self._key(account))
