"""A per-process buffer written in batches by a background task: the pattern of session recording
(`market.telemetry.sessions`), made reusable. The request path appends values to a flat list (no await, no
object of its own per entry); the writer takes the whole list every `interval_s`, or sooner when `batch`
entries wait, and hands it to `write`. `flush()` may be awaited by anyone who must read what was recorded
(a report in the same process): it waits for a write in flight, then writes what is left, so that what was
recorded before the call is in the database when it returns. `stop()` flushes once more within a deadline.

What happens when `write` fails is the owner's choice (`on_failure`): the batch is handed back, with whether
the writer will try again (the buffer keeps it, while it fits) or gave it up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)

STOP_DEADLINE_S = 2.0


class BatchBuffer:
    """`values` is the flat list the request path extends with `width` values per entry. `write(values)`
    stores a batch; it is never called twice at once. A batch whose write fails is put back in front of the
    buffer (retried at the next flush) while the buffer stays under `capacity` entries; past that it is given
    up to `on_failure`."""

    def __init__(
        self,
        write: Callable[[list[Any]], Awaitable[None]],
        *,
        width: int,
        capacity: int,
        batch: int,
        interval_s: float,
        name: str,
        on_failure: Callable[[list[Any]], None] | None = None,
    ) -> None:
        self._write = write
        self._width = width
        self._capacity_values = capacity * width
        self._batch_values = batch * width
        self._interval_s = interval_s
        self._name = name
        self._on_failure = on_failure
        self.values: list[Any] = []
        self._lock = asyncio.Lock()
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    # --- the request path ---------------------------------------------------------------------------------

    def has_room(self, entries: int = 1) -> bool:
        return len(self.values) + entries * self._width <= self._capacity_values

    def appended(self) -> None:
        """Call after extending `values`: wakes the writer when a batch is full."""
        if len(self.values) >= self._batch_values and self._wake is not None:
            self._wake.set()

    def pending(self) -> int:
        return len(self.values) // self._width

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    # --- the writer ---------------------------------------------------------------------------------------

    def start(self) -> None:
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._flush_forever(), name=self._name)

    async def stop(self, deadline_s: float = STOP_DEADLINE_S) -> None:
        """Stop the writer and write what is buffered, within `deadline_s` (what cannot be written in time
        goes to `on_failure`)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task], timeout=deadline_s)
            self._task = None
        self._wake = None
        try:
            await asyncio.wait_for(self.flush(retry=False), deadline_s)
        except Exception:  # the timeout included: a shutdown must end
            log.warning("%s: buffered entries not written at shutdown", self._name, exc_info=True)
            self._give_up(self.values)
            self.values = []

    async def flush(self, *, retry: bool = True) -> int:
        """Write everything recorded before this call (waiting for a write in flight first); returns how many
        entries this call wrote. A failed write raises after putting the batch back (`retry`) or giving it
        up."""
        async with self._lock:
            batch, self.values = self.values, []
            if not batch:
                return 0
            try:
                await self._write(batch)
            except BaseException:
                if retry and len(batch) + len(self.values) <= self._capacity_values:
                    self.values[:0] = batch
                else:
                    self._give_up(batch)
                raise
            return len(batch) // self._width

    def _give_up(self, batch: list[Any]) -> None:
        if batch and self._on_failure is not None:
            self._on_failure(batch)

    async def _flush_forever(self) -> None:
        assert self._wake is not None
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval_s)
            self._wake.clear()
            try:
                await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("%s: could not write a batch; will retry", self._name, exc_info=True)


def flushed_first(inner: Any, flush: Callable[[], Awaitable[object]]) -> Any:
    """`inner`, whose coroutine methods each await `flush()` first: reads of what a BatchBuffer writes see
    everything this process recorded before them (read-your-writes within the process)."""
    return _FlushedFirst(inner, flush)


class _FlushedFirst:
    def __init__(self, inner: Any, flush: Callable[[], Awaitable[object]]) -> None:
        self._inner = inner
        self._flush = flush

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._inner, name)
        if not asyncio.iscoroutinefunction(attribute):
            return attribute
        flush = self._flush

        async def after_flush(*args: Any, **kwargs: Any) -> Any:
            await flush()
            return await attribute(*args, **kwargs)

        return after_flush
