"""Argon2id password hashing, off the event loop and capped (one hash costs 64 MiB and tens of ms of CPU).

Without the cap, a flood of sign-ins started a thread per hash: each took the CPU for longer, memory grew by
64 MiB a hash, and a real sign-in waited behind all of them (3.9 s under 40 concurrent bad logins). With it, at
most `concurrency` hashes run at once; a caller that gets no slot within `wait_s` is refused (ServerBusy, a 503
with Retry-After) instead of joining an unbounded queue.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from market.domain.errors import ServerBusy

T = TypeVar("T")


class Argon2PasswordHasher:
    def __init__(
        self, hasher: PasswordHasher | None = None, *, concurrency: int = 2, wait_s: float = 2.0
    ) -> None:
        self._hasher = hasher or PasswordHasher()
        self._slots = asyncio.Semaphore(concurrency)
        self._wait_s = wait_s

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
        try:
            async with asyncio.timeout(self._wait_s):
                await self._slots.acquire()
        except TimeoutError:
            raise ServerBusy(retry_after_s=1) from None
        try:
            return await asyncio.to_thread(work, *args)
        finally:
            self._slots.release()
