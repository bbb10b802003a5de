"""Per-client-IP rate limits on the routes worth abusing (sign-in, registration, checkout, session events).

A route opts in with `guards=[rate_limited("sign-in")]`; the guard runs after routing and before the body is
read, so a refused request costs next to nothing. Routes without it (health, metrics, ...) are never limited.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network, ip_address
from typing import Any, Protocol

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from market.config import Rate, RateLimitSettings
from market.domain.errors import RateLimited

DEVICE_COOKIE = "market_device"
"""The known-device cookie a successful sign-in sets (see `KnownDevices`, bound in bootstrap)."""


class RequestLimiter(Protocol):
    """Counts requests per key against a rate (the security adapter's `Limiter`, on Redis or in-process)."""

    async def hit(self, key: str, rate: Rate, detail: str, *, bucket: str = "other") -> None:
        """Count one request; RateLimited when `key` is over `rate`."""

    def refused(self, bucket: str) -> None:
        """Count a refusal made elsewhere (the sign-ins in flight)."""


class KnownDevices(Protocol):
    """Signs and recognises known-device cookies (the security adapter's `KnownDevices`)."""

    lifetime_s: int

    def issue(self, email: str) -> str: ...

    def recognises(self, cookie: str | None, email: str) -> bool: ...


HashingLane = Callable[[bool], AbstractContextManager[None]]
"""`lane(known)`: within the block, this task's password hashes may use the lane reserved for credentials that
look legitimate (the security adapter's `known_credentials`)."""


class InFlight:
    """Requests in progress per client address in this process, at most `per_client` each.

    The per-IP window still lets a burst through (20 sign-ins at once by default); without this, one address
    could fill the password-hashing queue with them and everyone else's sign-in would wait behind it."""

    def __init__(self, per_client: int, on_refused: Callable[[], None] | None = None) -> None:
        self._per_client = per_client
        self._counts: dict[str, int] = {}
        self._on_refused = on_refused

    @asynccontextmanager
    async def slot(self, client: str) -> AsyncIterator[None]:
        """Hold one of `client`'s places for the block; RateLimited (retry in 1 s) when none is free."""
        if self._counts.get(client, 0) >= self._per_client:
            if self._on_refused is not None:
                self._on_refused()
            raise RateLimited(1, "Too many sign-ins at once from your address.")
        self._counts[client] = self._counts.get(client, 0) + 1
        try:
            yield
        finally:
            self._counts[client] -= 1
            if not self._counts[client]:
                del self._counts[client]


@dataclass(frozen=True, slots=True)
class RouteLimits:
    """The limiter and the rate of each bucket; in the app state as `limits` (absent when limits are off)."""

    limiter: RequestLimiter
    rates: dict[str, Rate]
    sign_ins: InFlight
    devices: KnownDevices
    hashing_lane: HashingLane
    trusted_proxies: tuple[IPv4Network | IPv6Network, ...] = field(default=())

    @classmethod
    def of(
        cls,
        settings: RateLimitSettings,
        limiter: RequestLimiter,
        devices: KnownDevices,
        hashing_lane: HashingLane,
    ) -> RouteLimits:
        return cls(
            limiter,
            {
                "sign-in": settings.sign_in,
                "sign-in-burst": settings.sign_in_burst,
                "register": settings.register,
                "checkout": settings.checkout,
                "session-events": settings.session_events,
            },
            InFlight(settings.sign_in_concurrency, lambda: limiter.refused("sign-in-concurrency")),
            devices,
            hashing_lane,
            settings.trusted_proxies,
        )


def client_ip(
    connection: ASGIConnection[Any, Any, Any, Any], trusted: tuple[IPv4Network | IPv6Network, ...]
) -> str:
    """The socket peer; behind trusted proxies, the right-most X-Forwarded-For address that is not one of them
    (what a client writes further left is not believed)."""
    peer = connection.client.host if connection.client else "unknown"
    if not trusted or not _within(peer, trusted):
        return peer
    forwarded = [a.strip() for a in connection.headers.get("x-forwarded-for", "").split(",") if a.strip()]
    for address in reversed(forwarded):
        if not _within(address, trusted):
            return address
    return peer


def _within(address: str, networks: tuple[IPv4Network | IPv6Network, ...]) -> bool:
    try:
        ip = ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


# A bucket with a smaller burst window on top of its own: both count every request.
_BURSTS = {"sign-in": ("sign-in-burst", "sign-in")}


def rate_limited(bucket: str) -> Any:
    """A guard counting the request against `bucket`'s per-IP rate; over it, RateLimited (429 + Retry-After)."""

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        limits: RouteLimits | None = connection.app.state.get("limits")
        if limits is None:
            return
        ip = client_ip(connection, limits.trusted_proxies)
        for each in _BURSTS.get(bucket, (bucket,)):
            await limits.limiter.hit(
                f"ip:{each}:{ip}", limits.rates[each], "Too many requests from your address.", bucket=each
            )

    guard.is_rate_limit = True  # type: ignore[attr-defined]  # no sign-in needed: see bearer_where_guarded
    return guard


@asynccontextmanager
async def sign_in_slot(connection: ASGIConnection[Any, Any, Any, Any], email: str) -> AsyncIterator[bool]:
    """Around a password check: one of the client address's few concurrent sign-in places, and the reserved
    hashing lane when the request carries a known-device cookie of `email`'s account. Yields whether it did
    (no-op yielding False when limits are off)."""
    limits: RouteLimits | None = connection.app.state.get("limits")
    if limits is None:
        yield False
        return
    known = limits.devices.recognises(connection.cookies.get(DEVICE_COOKIE), email)
    async with limits.sign_ins.slot(client_ip(connection, limits.trusted_proxies)):
        with limits.hashing_lane(known):
            yield known


@contextmanager
def signed_in_lane(connection: ASGIConnection[Any, Any, Any, Any]) -> Iterator[None]:
    """Around a signed-in user's password check: the reserved hashing lane. With limits off there is one lane
    for every caller, so nothing to choose."""
    limits: RouteLimits | None = connection.app.state.get("limits")
    if limits is None:
        yield
        return
    with limits.hashing_lane(True):
        yield
