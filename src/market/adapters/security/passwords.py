"""Argon2id password hashing, off the event loop and capped (one hash costs 64 MiB and a core for 60-200 ms).

Without the cap, a flood of sign-ins started a thread per hash: each took the CPU for longer, memory grew by
64 MiB a hash, and a real sign-in waited behind all of them (3.9 s under 40 concurrent bad logins). With it, at
most `concurrency` hashes run at once; a caller that gets no slot within `wait_s` is refused (ServerBusy, a 503
with Retry-After) instead of joining an unbounded queue.

The slots are a budget in two lanes. `reserved` of them serve only credentials that look legitimate (a sign-in
from a device that signed in to that very account before, a password change by a signed-in user: the caller
says so with `known_credentials()`); everyone else shares the rest. A flood of wrong passwords from any number of
addresses can fill only the shared lane, and its excess is refused at once instead of queueing for `wait_s`,
so it can neither starve known users nor take every core. Unknown callers' hashes also run in threads at the
lowest CPU priority (nice 19, Linux): they get what the known users' hashes and the event loop leave over.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from typing import TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from market.domain.errors import ServerBusy

T = TypeVar("T")

_KNOWN: ContextVar[bool] = ContextVar("market_known_credentials", default=False)


@contextlib.contextmanager
def known_credentials(known: bool = True) -> Iterator[None]:
    """Within the block, this task's hashes may use the reserved lane (when `known`)."""
    token = _KNOWN.set(known)
    try:
        yield
    finally:
        _KNOWN.reset(token)


def _lower_priority() -> None:
    """Run this (pool) thread at the lowest CPU priority; on Linux, nice values are per thread."""
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, 0, 19)


class Argon2PasswordHasher:
    def __init__(
        self,
        hasher: PasswordHasher | None = None,
        *,
        concurrency: int = 2,
        wait_s: float | None = 2.0,
        reserved: int = 0,
        on_refused: Callable[[], None] | None = None,
    ) -> None:
        """`concurrency` hashes at once, `reserved` of them for known credentials only (the shared lane keeps
        at least one slot); with `reserved`, unknown callers' hashes run in low-priority threads and a caller
        of the shared lane that finds it full and queued is refused at once. `wait_s` None: callers wait for a
        slot as long as it takes, never refused (rate limits off). `on_refused` counts refusals."""
        self._hasher = hasher or PasswordHasher()
        self._shared_size = max(1, concurrency - reserved)
        self._shared = asyncio.Semaphore(self._shared_size)
        self._reserved = asyncio.Semaphore(reserved) if reserved > 0 else None
        self._shared_waiting = 0
        self._wait_s = wait_s
        self._on_refused = on_refused
        self._low_priority = reserved > 0
        self._background: ThreadPoolExecutor | None = None  # made on first use, again after close()

    async def hash(self, password: str) -> str:
        """The argon2id hash of `password`; ServerBusy when no slot frees up in time."""
        return await self._capped(self._hasher.hash, password)

    async def verify(self, password_hash: str, password: str) -> bool:
        """True when `password` matches `password_hash`; ServerBusy when no slot frees up in time."""
        try:
            return await self._capped(self._hasher.verify, password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    async def _capped(self, work: Callable[..., T], *args: str) -> T:
        known = self._reserved is not None and _KNOWN.get()
        slot = await (self._known_slot() if known else self._shared_slot())
        try:
            if known or not self._low_priority:
                return await asyncio.to_thread(work, *args)
            if self._background is None:
                self._background = ThreadPoolExecutor(
                    self._shared_size, "market-hash-shared", initializer=_lower_priority
                )
            return await asyncio.get_running_loop().run_in_executor(self._background, work, *args)
        finally:
            slot.release()

    async def _known_slot(self) -> asyncio.Semaphore:
        assert self._reserved is not None
        for lane in (self._reserved, self._shared):
            if not lane.locked():
                await lane.acquire()  # free and nobody queued: does not wait
                return lane
        return await self._acquire(self._reserved)

    async def _shared_slot(self) -> asyncio.Semaphore:
        # With a reserved lane, the shared one is a budget: as many callers may wait for it as it has slots;
        # any more are refused now (a flood's excess costs nothing), not after `wait_s`.
        if self._reserved is not None and self._shared.locked() and self._shared_waiting >= self._shared_size:
            self._refuse()
        self._shared_waiting += 1
        try:
            return await self._acquire(self._shared)
        finally:
            self._shared_waiting -= 1

    async def _acquire(self, lane: asyncio.Semaphore) -> asyncio.Semaphore:
        try:
            async with asyncio.timeout(self._wait_s):
                await lane.acquire()
        except TimeoutError:
            self._refuse()
        return lane

    def _refuse(self) -> None:
        if self._on_refused is not None:
            self._on_refused()
        raise ServerBusy(retry_after_s=1) from None

    def close(self) -> None:
        """Stop the low-priority threads (after the running hashes finish)."""
        background, self._background = self._background, None
        if background is not None:
            background.shutdown(wait=False, cancel_futures=True)
