"""A per-process buffer written in batches by a background task (analytics events, session recording). The
request path appends values to a flat list (no await, no object of its own per entry); the writer takes the
whole list every `interval_s`, or sooner when `batch` entries wait, and hands it to `write`. An owner may also
queue `side` items (e.g. client events next to session entries): they share the capacity, one entry each, and
are written in the same call as the values taken with them. `flush()` may be awaited by anyone who must read
what was recorded (a report in the same process): it waits for a write in flight, then writes what is left,
so that what was recorded before the call is in the database when it returns. `stop()` flushes once more
within a deadline.

What happens when `write` fails is the owner's choice (`retry`): the batch is put back in front of the buffer
and written again at the next flush (while it fits), or given up at once. A batch given up, and what `stop()`
could not write in time, goes to `on_failure`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

log = logging.getLogger(__name__)

STOP_DEADLINE_S = 2.0


class BatchBuffer:
    """`values` is the flat list the request path extends with `width` values per entry, while
    `len(values) < limit` (one comparison; `has_room` says the same for several entries). `side` holds items
    added with `add_side`. `write(values, side)` stores a batch; it is never called twice at once. A batch
    whose write fails is put back in front of the buffer (retried at the next flush) when `retry` and while
    the buffer stays under `capacity` entries; otherwise it is given up to `on_failure(values, side)`."""

    def __init__(
        self,
        write: Callable[[list[Any], list[Any]], Awaitable[None]],
        *,
        width: int,
        capacity: int,
        batch: int,
        interval_s: float,
        name: str,
        on_failure: Callable[[list[Any], list[Any]], None] | None = None,
        retry: bool = True,
    ) -> None:
        self._write = write
        self._width = width
        self._capacity = capacity
        self._capacity_values = capacity * width
        self._batch_values = batch * width
        self._interval_s = interval_s
        self._name = name
        self._on_failure = on_failure
        self._retry = retry
        self.values: list[Any] = []
        self.side: list[Any] = []
        self.limit = self._capacity_values
        """Length of `values` from which an entry no longer fits: (capacity - side items) * width, kept up to
        date so that the request path compares one number."""
        self._lock = asyncio.Lock()
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    # --- the request path ---------------------------------------------------------------------------------

    def has_room(self, entries: int = 1) -> bool:
        return len(self.values) + entries * self._width <= self.limit

    def appended(self) -> None:
        """Call after extending `values`: wakes the writer when a batch is full."""
        if len(self.values) >= self._batch_values and self._wake is not None:
            self._wake.set()

    def add_side(self, items: Sequence[Any]) -> bool:
        """Queue `items` to be written with the next batch, all or none: False when they do not fit."""
        if self.pending() + len(items) > self._capacity:
            return False
        self.side.extend(items)
        self.limit = (self._capacity - len(self.side)) * self._width
        return True

    def pending(self) -> int:
        return len(self.values) // self._width + len(self.side)

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
            values, side = self._take()
            self._give_up(values, side)

    async def flush(self, *, retry: bool | None = None) -> int:
        """Write everything recorded before this call (waiting for a write in flight first); returns how many
        entries (and side items) this call wrote. A failed write raises after putting the batch back (`retry`,
        by default the buffer's) or giving it up."""
        async with self._lock:
            batch, side = self._take()
            if not batch and not side:
                return 0
            try:
                await self._write(batch, side)
            except BaseException:
                keep = self._retry if retry is None else retry
                if (
                    keep
                    and (len(batch) + len(self.values)) // self._width + len(side) + len(self.side)
                    <= self._capacity
                ):
                    self.values[:0] = batch
                    self.side[:0] = side
                    self.limit = (self._capacity - len(self.side)) * self._width
                else:
                    self._give_up(batch, side)
                raise
            return len(batch) // self._width + len(side)

    def _take(self) -> tuple[list[Any], list[Any]]:
        batch, side = self.values, self.side
        self.values, self.side = [], []
        self.limit = self._capacity_values
        return batch, side

    def _give_up(self, batch: list[Any], side: list[Any]) -> None:
        if (batch or side) and self._on_failure is not None:
            self._on_failure(batch, side)

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
                outcome = "will retry" if self._retry else "given up"
                log.warning("%s: could not write a batch; %s", self._name, outcome, exc_info=True)


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
