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
from collections.abc import Awaitable, Callable
from typing import TypeVar

from litestar.stores.memory import MemoryStore
from litestar.stores.redis import RedisStore
from redis.asyncio import Redis

from market.config import Rate, RateLimitSettings
from market.domain.errors import RateLimited

log = logging.getLogger(__name__)

_T = TypeVar("_T")


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
    """Fixed-window limits on a counting store. While the store cannot be reached (a Redis outage), the limits
    are counted in this process's memory, and the store is tried again every STORE_RETRY_S: an outage neither
    stops sign-ins and checkouts nor lifts the limits (each process then allows the rate on its own, as without
    MARKET_REDIS_URL), and requests do not each wait out the store's timeout. Said once per outage in the log."""

    STORE_RETRY_S = 5.0

    def __init__(self, store: CountingStore, on_refused: Callable[[str], None] | None = None) -> None:
        """`on_refused(bucket)` counts each refusal (the `market.rate_limit.refused` metric)."""
        self.store = store
        self.on_refused = on_refused
        self._local = store if isinstance(store, CountingMemoryStore) else CountingMemoryStore()
        self._store_down_until: float | None = None
        """time.monotonic() until which the store is not asked; None while it answers."""

    async def _counting(self, operation: Callable[[CountingStore], Awaitable[_T]]) -> _T:
        """`operation` on the store, or on this process's memory while the store is out."""
        down_until = self._store_down_until
        if down_until is not None and time.monotonic() < down_until:
            return await operation(self._local)
        try:
            result = await operation(self.store)
        except Exception as exc:  # any failure of the store (the memory store raises none of its own)
            if self.store is self._local:
                raise
            if self._store_down_until is None:
                log.warning(
                    "rate limit store unavailable (%s: %s); limits are counted in this process until it answers",
                    type(exc).__name__,
                    exc,
                )
            self._store_down_until = time.monotonic() + self.STORE_RETRY_S
            return await operation(self._local)
        if self._store_down_until is not None:
            self._store_down_until = None
            log.warning("rate limit store answers again; limits are shared again")
        return result

    async def hit(self, key: str, rate: Rate, detail: str, *, bucket: str = "other") -> None:
        """Count one hit on `key`; raises RateLimited when it is over `rate` (counted as a refusal in
        `bucket`)."""
        count, remaining_s = await self._counting(lambda store: store.increment(key, rate.window_s))
        if count > rate.count:
            self.refused(bucket)
            raise RateLimited(max(1, math.ceil(remaining_s)), detail)

    def refused(self, bucket: str) -> None:
        """Count a refusal in `bucket` (a bounded set of names: the route buckets, `account`, ...)."""
        if self.on_refused is not None:
            self.on_refused(bucket)

    async def take_back(self, key: str) -> None:
        """Uncount one hit on `key` (a request that was not decided)."""
        await self._counting(lambda store: store.decrement(key))

    async def clear(self, key: str) -> None:
        await self._counting(lambda store: store.delete(key))

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
