"""`market backup create` / `restore` against plain `pg_dump -Fc` / `pg_restore` on the same data.

Creates its own PostgreSQL databases (seeded with the demo data), prints the figures, drops everything:

    python benchmarks/backup_roundtrip.py [--items 100000] [--repeat 3]

The server is MARKET_TEST_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/postgres), a role that may
create databases. Figures are medians over --repeat runs; nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg

from market.adapters.db.database import Database
from market.adapters.db.seed import seed_demo_data
from market.config import DatabaseSettings, DatabaseURL
from market.ops.backups.service import BackupService

ADMIN_URL = os.environ.get("MARKET_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def url_of(name: str) -> str:
    return f"{ADMIN_URL.rpartition('/')[0]}/{name}"


async def admin(sql: str) -> None:
    conn = await asyncpg.connect(ADMIN_URL)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def seed(url: str, sellers: int, items: int) -> None:
    database = Database(DatabaseSettings(url=DatabaseURL.parse(url)))
    await database.start()
    try:
        await database.migrate()
        await seed_demo_data(database, sellers=sellers, items=items, password_hash="$argon2id$bench")
    finally:
        await database.close()


async def main(items: int, sellers: int, repeat: int) -> None:
    run = uuid.uuid4().hex[:8]
    source, targets = f"market_bench_{run}", []
    await admin(f'CREATE DATABASE "{source}"')
    try:
        started = time.perf_counter()
        await seed(url_of(source), sellers, items)
        print(f"seeded {sellers} sellers and {items} items in {time.perf_counter() - started:.1f} s")
        size = await _database_size(source)
        print(f"database size: {size / 1e6:.1f} MB (pg_database_size)\n")

        figures: dict[str, list[float]] = {}
        sizes: dict[str, int] = {}
        with tempfile.TemporaryDirectory(prefix="market-bench-") as tmp:
            directory = Path(tmp)
            service = BackupService(DatabaseURL.parse(url_of(source)), directory / "backups")
            for n in range(repeat):
                # market backup create, then restore into a new database (the restore includes checking the
                # archive before and counting rows after, as the command does).
                started = time.perf_counter()
                info = await service.create()
                figures.setdefault("market create", []).append(time.perf_counter() - started)
                sizes["market create"] = info.size
                target = await _new_database(f"market_bench_{run}_r{n}", targets)
                restorer = BackupService(DatabaseURL.parse(url_of(target)), directory / "backups")
                started = time.perf_counter()
                await restorer.restore(info.path)
                figures.setdefault("market restore", []).append(time.perf_counter() - started)
                info.path.unlink()

                # The same data with the plain tools, default options.
                dump = directory / f"plain-{n}.dump"
                started = time.perf_counter()
                await _tool("pg_dump", "-Fc", f"--file={dump}", url_of(source))
                figures.setdefault("pg_dump -Fc", []).append(time.perf_counter() - started)
                sizes["pg_dump -Fc"] = dump.stat().st_size
                target = await _new_database(f"market_bench_{run}_p{n}", targets)
                started = time.perf_counter()
                await _tool("pg_restore", "--exit-on-error", f"--dbname={url_of(target)}", str(dump))
                figures.setdefault("pg_restore", []).append(time.perf_counter() - started)
                dump.unlink()

            # verify: a restore into a scratch database (created and dropped) and the row-count comparison.
            info = await service.create()
            started = time.perf_counter()
            await service.verify(info.path)
            figures["market verify"] = [time.perf_counter() - started]

        print(f"{'operation':<16}{'median s':>10}{'min s':>9}{'size MB':>10}")
        for name, values in figures.items():
            size_mb = f"{sizes[name] / 1e6:.1f}" if name in sizes else ""
            print(f"{name:<16}{statistics.median(values):>10.2f}{min(values):>9.2f}{size_mb:>10}")
    finally:
        for name in [source, *targets]:
            await admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _database_size(name: str) -> int:
    conn = await asyncpg.connect(ADMIN_URL)
    try:
        return await conn.fetchval("SELECT pg_database_size($1)", name)
    finally:
        await conn.close()


async def _new_database(name: str, created: list[str]) -> str:
    await admin(f'CREATE DATABASE "{name}"')
    created.append(name)
    return name


async def _tool(*argv: str) -> None:
    process = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL)
    if await process.wait() != 0:
        raise SystemExit(f"{argv[0]} failed")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--sellers", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.items, args.sellers, args.repeat))
