"""Session recording: the edge middleware hands over one compact entry per API request; a background task
writes them in batches. The request path only appends the entry's ten values to a flat, bounded list: no
database, no await, no wait, and no object of its own (an entry kept as a tuple is a container the garbage
collector counts, and 2 000 of them waiting per second made it run several times as often; benchmarks/README.md).
A full buffer drops the entry and counts it (`market.telemetry.dropped{signal="session"}`). The writer builds
the entries, their timestamps and rows one at a time as the batch streams into the database.

The buffer and its writer are a `market.batching.BatchBuffer` (client events ride along as its side items,
sharing the capacity); a batch the database refuses is dropped and counted, not retried. Entries are flushed
every FLUSH_INTERVAL_S, or sooner when a batch is full, and once more at shutdown within its deadline.
Entries older than the retention are pruned every PRUNE_INTERVAL_S.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, overload

from market.batching import BatchBuffer
from market.domain.sessions import ClientEvent, RequestEntry

from .drops import DROPS, SESSIONS, DropTally

log = logging.getLogger(__name__)

CAPACITY = 20_000
"""Entries waiting for the database at most (≈ 200 bytes each): seconds of traffic at any realistic rate."""
BATCH = 2_000
FLUSH_INTERVAL_S = 1.0
PRUNE_INTERVAL_S = 3600.0
STOP_DEADLINE_S = 2.0
"""The shutdown's last flush gets this long; what it cannot write in time is counted as dropped."""
RECORDED_PREFIX = "/api/"
"""Only API requests make a session's story (not probes, metrics scrapes, docs or the dashboard's pages)."""


class _Store(Protocol):
    async def write(self, requests: Sequence[RequestEntry], events: Sequence[ClientEvent]) -> None: ...

    async def prune(self, older_than: datetime) -> int: ...


FIELDS = 10
"""Values per request entry in the buffer: session_id, started at (unix s), method, route, status, seconds,
trace_id, problem type, sentry event id, user id."""


class SessionRecording:
    """The per-process buffer (a `BatchBuffer`: request entries as its values, client events as its side
    items) and its pruner. `record_request` and `record_events` are safe to call from request handlers;
    `start()`/`stop()` run the writer and the pruner in the event loop (the app's lifespan)."""

    def __init__(
        self,
        store: _Store,
        *,
        retention: timedelta,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        capacity: int = CAPACITY,
        batch: int = BATCH,
        flush_interval_s: float = FLUSH_INTERVAL_S,
        prune_interval_s: float = PRUNE_INTERVAL_S,
        tally: DropTally = DROPS,
    ) -> None:
        self._store = store
        self._retention = retention
        self._now = now
        self._prune_interval_s = prune_interval_s
        self._tally = tally
        self.buffer = BatchBuffer(
            self._write,
            width=FIELDS,
            capacity=capacity,
            batch=batch,
            interval_s=flush_interval_s,
            name="session-recorder",
            on_failure=self._dropped,
            retry=False,  # retrying would let a dead database fill memory
        )
        """Flat: FIELDS values per request entry, one after the other; client events as side items."""
        self._batch_values = batch * FIELDS
        self._pruner: asyncio.Task[None] | None = None

    # --- the request path -------------------------------------------------------------------------------

    def record_request(
        self,
        session_id: str,
        started: float,
        method: str,
        route: str | None,
        status: int,
        elapsed_s: float,
        trace_id: str,
        problem_type: str | None,
        sentry_event_id: str | None,
        user_id: str | None,
    ) -> None:
        """One request's entry (`started`: unix time in seconds). Never blocks; drops and counts when full."""
        buffer = self.buffer
        requests = buffer.values
        if len(requests) >= buffer.limit:
            self._tally.add(SESSIONS)
            return
        # extend, not append: the values go into the list itself, and the argument tuple is freed at once.
        requests += (
            session_id,
            started,
            method,
            route,
            status,
            elapsed_s,
            trace_id,
            problem_type,
            sentry_event_id,
            user_id,
        )
        if len(requests) >= self._batch_values:
            buffer.appended()

    def record_events(self, events: Sequence[ClientEvent]) -> bool:
        """Client-reported events, all or none; False (and counted as dropped) when they do not fit."""
        if not self.buffer.add_side(events):
            self._tally.add(SESSIONS, len(events))
            return False
        return True

    def pending(self) -> int:
        return self.buffer.pending()

    # --- the writer -------------------------------------------------------------------------------------

    def start(self) -> None:
        self.buffer.start()
        self._pruner = asyncio.create_task(self._prune_forever(), name="session-pruner")

    async def stop(self, deadline_s: float = STOP_DEADLINE_S) -> None:
        """Stop the writer and flush what is buffered, within `deadline_s`; the rest is counted as dropped."""
        pruner, self._pruner = self._pruner, None
        if pruner is None:
            await self.buffer.stop(deadline_s)
            return
        pruner.cancel()
        await asyncio.gather(self.buffer.stop(deadline_s), asyncio.wait([pruner], timeout=deadline_s))

    async def flush(self) -> int:
        """Write what is buffered in one batch; returns how many entries were written. A failed write is
        logged and its entries counted as dropped (retrying would let a dead database fill memory)."""
        try:
            return await self.buffer.flush(retry=False)
        except Exception:
            log.warning("could not write session entries; dropped", exc_info=True)
            return 0

    async def _write(self, values: list[Any], events: list[ClientEvent]) -> None:
        await self._store.write(_Entries(values), events)

    def _dropped(self, values: list[Any], events: list[ClientEvent]) -> None:
        self._tally.add(SESSIONS, len(values) // FIELDS + len(events))

    async def _prune_forever(self) -> None:
        while True:
            await asyncio.sleep(self._prune_interval_s)
            await self.prune()

    async def prune(self) -> int:
        try:
            deleted = await self._store.prune(self._now() - self._retention)
        except Exception:
            log.warning("could not prune session entries; will retry", exc_info=True)
            return 0
        if deleted:
            log.info("pruned session entries", extra={"deleted": deleted})
        return deleted


class _Entries(Sequence[RequestEntry]):
    """A batch of the flat buffer as the store's sequence of entries, each made when it is read: a batch
    streamed into COPY never holds 2 000 entries (and their rows) at once."""

    __slots__ = ("_raw",)

    def __init__(self, raw: list[Any]) -> None:
        self._raw = raw

    def __len__(self) -> int:
        return len(self._raw) // FIELDS

    def __iter__(self) -> Iterator[RequestEntry]:
        values = iter(self._raw)
        for session_id, started, method, route, status, elapsed, trace_id, problem, sentry_id, user_id in zip(
            *[values] * FIELDS, strict=True
        ):
            # Positional: measurably cheaper than keywords, and this runs once per recorded request.
            yield RequestEntry(
                session_id,
                _fromtimestamp(started, UTC),  # about half the cost of the epoch plus a timedelta
                method,
                route,
                status,
                elapsed * 1000,
                trace_id,
                problem,
                sentry_id,
                user_id,
            )

    @overload
    def __getitem__(self, index: int) -> RequestEntry: ...

    @overload
    def __getitem__(self, index: slice) -> list[RequestEntry]: ...

    def __getitem__(self, index: int | slice) -> RequestEntry | list[RequestEntry]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        start = index * FIELDS
        return next(iter(_Entries(self._raw[start : start + FIELDS])))


_fromtimestamp = datetime.fromtimestamp
