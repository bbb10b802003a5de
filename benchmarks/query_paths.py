"""What one statement costs the service's process on each path it could take to PostgreSQL: the figures behind
the data layer's choice of raw SQL on hot paths (README, "Data layer").

For three statements of the hot paths (an item by id, browse's first page, checkout's stock reservation,
which is rolled back), each run `--calls` times on one pooled connection, outside any trace:

- `sql`: `Database.fetch` with a named SQL constant (Piccolo's `QueryString` compiles its `{}` placeholders
  to `$n` on every call, then the engine runs it);
- `builder`: Piccolo's query builder (`ItemRow.select().where(...)`, `ItemRow.update(...).returning(...)`).

(A third path, the `{}` template compiled once and cached, then run on the pool directly, was measured on
2026-12-03 within noise of `sql` — 159/231/361 vs 170/224/349 µs CPU — and removed.)

Prints wall and CPU (process time) per call; the CPU is what a request pays on the service's core, the
wall includes the database's own work. Nothing is asserted.

    .venv/bin/python benchmarks/query_paths.py [--calls 2000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from _harness import add_connection_arguments, empty_database, print_environment

from market.adapters.db.database import Database
from market.adapters.db.seed import seed_demo_data
from market.adapters.db.tables import ItemRow, select_list
from market.config import DatabaseSettings, DatabaseURL

_ITEM = f"SELECT {select_list(ItemRow)} FROM items WHERE id = {{}}"
_FIRST_PAGE = (
    f"SELECT {select_list(ItemRow)} FROM items WHERE status = 'active'"
    " ORDER BY created_at DESC, id DESC LIMIT {}"
)
_RESERVE = (
    "UPDATE items SET stock = stock - {} WHERE id = {} AND status = 'active' AND stock >= {} RETURNING stock"
)


async def _time(calls: int, run: Callable[[], Awaitable[Any]]) -> tuple[float, float]:
    """(wall µs, CPU µs) per call."""
    for _ in range(50):  # warm the connection's statement cache
        await run()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(calls):
        await run()
    return (
        (time.perf_counter() - wall) / calls * 1e6,
        (time.process_time() - cpu) / calls * 1e6,
    )


async def run(args: argparse.Namespace, url: str) -> None:
    db = Database(DatabaseSettings(url=DatabaseURL.parse(url)))
    await db.start()
    try:
        await db.migrate()
        await seed_demo_data(db, sellers=10, items=10_000, password_hash="x")
        item_id = (await db.fetch("SELECT id FROM items WHERE stock > 0 LIMIT 1"))[0]["id"]
        engine = db.engine
        columns = [getattr(ItemRow, name) for name in ("id", "stock")]

        async def reserve(path: str) -> None:
            # In a transaction that is rolled back: the stock stays, the statement is the one checkout runs.
            async with engine.transaction() as transaction:
                if path == "sql":
                    await db.fetch(_RESERVE, 1, item_id, 1)
                else:
                    await (
                        ItemRow.update({ItemRow.stock: ItemRow.stock - 1})
                        .where((ItemRow.id == item_id) & (ItemRow.status == "active") & (ItemRow.stock >= 1))
                        .returning(columns[1])
                    )
                await transaction.rollback()

        statements: dict[str, dict[str, Callable[[], Awaitable[Any]]]] = {
            "item by id": {
                "sql": lambda: db.fetch(_ITEM, item_id),
                "builder": lambda: ItemRow.select().where(ItemRow.id == item_id).first(),
            },
            "first page (20)": {
                "sql": lambda: db.fetch(_FIRST_PAGE, 20),
                "builder": lambda: (
                    ItemRow.select()
                    .where(ItemRow.status == "active")
                    .order_by(ItemRow.created_at, ItemRow.id, ascending=False)
                    .limit(20)
                ),
            },
            "stock reservation (+BEGIN/ROLLBACK)": {
                path: (lambda path=path: reserve(path)) for path in ("sql", "builder")
            },
        }
        print(
            f"{args.calls} calls per path, {args.rounds} interleaved rounds, medians; one pooled connection"
        )
        print(f"{'statement':38} {'path':12} {'wall µs':>9} {'CPU µs':>9}")
        for statement, paths in statements.items():
            figures: dict[str, list[tuple[float, float]]] = {path: [] for path in paths}
            for _ in range(args.rounds):
                for path, run in paths.items():
                    figures[path].append(await _time(args.calls, run))
            for path, runs in figures.items():
                wall = statistics.median(w for w, _ in runs)
                cpu = statistics.median(c for _, c in runs)
                print(f"{statement:38} {path:12} {wall:9.0f} {cpu:9.0f}")
    finally:
        await db.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_connection_arguments(parser, "unused: the benchmark makes its own database")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    arguments = parser.parse_args()
    print_environment()
    with empty_database(arguments.admin_url) as database_url:
        asyncio.run(run(arguments, database_url))
