"""What writing one analytics event adds to the request that makes it (issue 16: <= 0.2 ms p50), in process, on
PostgreSQL: an item view recorded through the log a browse request uses, outside any transaction, as
`view_item` does —

- `direct`: SqlAnalyticsLog, one INSERT per event, awaited by the request (the log before the buffer);
- `buffered`: BufferedAnalyticsLog with its writer running, as `market serve` runs it: the request appends the
  row's values to the buffer; the writer stores them every second, or per 2 000, with COPY.

Interleaved rounds of `--events` calls each (one at a time, as a request makes them); prints p50/p95 of the wall
time of one `record()` call, and the CPU the buffered log's writer spends per event (the flushes timed
separately: `--events` buffered, then one flush). Creates an empty database, migrates it and drops it. Nothing
is asserted.

    .venv/bin/python benchmarks/analytics_event_write.py [--events 2000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from datetime import UTC, datetime

from _harness import DEFAULT_ADMIN_URL, empty_database, print_environment

from market.adapters.db.analytics import BufferedAnalyticsLog, SqlAnalyticsLog
from market.adapters.db.database import Database
from market.config import DatabaseSettings, DatabaseURL
from market.domain.events import ItemViewed


def _identity() -> tuple[str | None, str | None, str | None]:
    return "bench-session", None, "4bf92f3577b34da6a3ce929d0e0e4736"


async def _calls(log: SqlAnalyticsLog | BufferedAnalyticsLog, events: int) -> list[float]:
    seconds: list[float] = []
    item, seller = str(uuid.uuid4()), str(uuid.uuid4())
    for _ in range(events):
        event = [ItemViewed(item, seller)]
        now = datetime.now(UTC)
        started = time.perf_counter()
        await log.record(event, now)
        seconds.append(time.perf_counter() - started)
        await asyncio.sleep(0)  # other tasks (the writer) run between requests, as in a server
    return seconds


async def _run(url: str, events: int, rounds: int) -> None:
    db = Database(DatabaseSettings(DatabaseURL.parse(url)))
    await db.start()
    try:
        await db.migrate()
        direct = SqlAnalyticsLog(db, _identity)
        buffered = BufferedAnalyticsLog(db, _identity)
        buffered.buffer.start()
        results: dict[str, list[float]] = {"direct": [], "buffered": []}
        writer_cpu: list[float] = []
        for round_no in range(rounds):
            order = ["direct", "buffered"] if round_no % 2 == 0 else ["buffered", "direct"]
            for name in order:
                log = direct if name == "direct" else buffered
                seconds = await _calls(log, events)
                results[name] += seconds
                q = statistics.quantiles(seconds, n=100)
                print(f"round {round_no + 1} {name:<8} p50 {q[49] * 1e3:.3f} ms  p95 {q[94] * 1e3:.3f} ms")
            # The writer's own cost: a full buffer of events, then one flush, on the CPU clock.
            await buffered.flush()
            await _calls(buffered, events)
            started = time.process_time()
            written = await buffered.flush()
            writer_cpu.append((time.process_time() - started) / max(written, 1))
        await buffered.buffer.stop()
        rows = await db.fetch("SELECT count(*) AS n FROM analytics_events")
        print(f"events stored: {rows[0]['n']}")
        for name, seconds in results.items():
            q = statistics.quantiles(seconds, n=100)
            print(
                f"{name:<8} record(): p50 {q[49] * 1e3:.3f} ms, p95 {q[94] * 1e3:.3f} ms"
                f" over {len(seconds)} calls"
            )
        print(
            f"buffered: the writer's CPU per event (COPY batch) {statistics.median(writer_cpu) * 1e6:.1f} µs"
        )
    finally:
        await db.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--admin-url", default=DEFAULT_ADMIN_URL)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print_environment()
    with empty_database(args.admin_url, prefix="market_bench_events") as url:
        asyncio.run(_run(url, args.events, args.rounds))


if __name__ == "__main__":
    main()
