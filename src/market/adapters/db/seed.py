"""Demo data: sellers with realistic catalog items, inserted in bulk."""

from __future__ import annotations

import asyncio
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from .database import Database
from .rows import ITEM_COLUMNS
from .tables import ItemRow, UserRow

DEMO_PASSWORD = "demo-password-123"
_BATCH = 1000  # rows per INSERT (11 columns x 1000 stays far below both engines' parameter limits) or COPY

_COLOURS = [
    "blue",
    "red",
    "green",
    "black",
    "white",
    "grey",
    "yellow",
    "orange",
    "purple",
    "teal",
    "navy",
    "olive",
    "amber",
]
_MATERIALS = [
    "ceramic",
    "wooden",
    "steel",
    "cotton",
    "leather",
    "glass",
    "bamboo",
    "linen",
    "wool",
    "copper",
    "marble",
    "cork",
]
_THINGS = {
    "kitchen": [
        "mug",
        "teapot",
        "bowl",
        "plate",
        "spoon",
        "kettle",
        "jug",
        "cutting-board",
        "grinder",
        "tray",
    ],
    "home": "lamp vase cushion blanket clock mirror basket candle frame rug".split(),
    "fashion": "scarf bag wallet belt hat gloves socks jacket shirt apron".split(),
    "office": "notebook pen desk-organiser stapler folder lamp planner bookend".split(),
    "garden": "planter watering-can trowel bird-feeder hose gloves bench lantern".split(),
    "toys": "puzzle kite yo-yo train doll blocks spinning-top marbles".split(),
}
_PHRASES = [
    "Handmade in small batches.",
    "Ships within two days.",
    "A gift people keep.",
    "Easy to clean.",
    "Made to last for years.",
    "Each piece is slightly different.",
    "Sustainably sourced.",
]


DEMO_EMAIL_DOMAIN = "demo.market.dev"


@dataclass(frozen=True, slots=True)
class Seeded:
    """What a seed made: the sellers' e-mails (in the order made) and how many items."""

    seller_emails: list[str]
    items: int


async def seed_demo_data(
    database: Database,
    *,
    sellers: int,
    items: int,
    password_hash: str,
    rng_seed: int = 42,
    email_domain: str = DEMO_EMAIL_DOMAIN,
) -> Seeded:
    """Insert `sellers` seller accounts (all with DEMO_PASSWORD, e-mails `sellerN-RUN@email_domain`) and
    `items` items spread over them."""
    rng = random.Random(rng_seed)
    now = datetime.now(UTC)
    run = uuid.uuid4().hex[:8]  # lets seed run twice without e-mail clashes
    seller_rows = [
        UserRow(
            id=uuid.uuid4(),
            email=f"seller{n}-{run}@{email_domain}",
            display_name=f"{rng.choice(_COLOURS).title()} {rng.choice(_MATERIALS).title()} Studio {n}",
            role="seller",
            password_hash=password_hash,
            created_at=now - timedelta(days=365),
        )
        for n in range(sellers)
    ]
    for start in range(0, len(seller_rows), _BATCH):
        await UserRow.insert(*seller_rows[start : start + _BATCH])
    emails = [row.email for row in seller_rows]
    if not seller_rows:
        return Seeded(emails, 0)

    categories = list(_THINGS)
    oldest = now - timedelta(days=180)
    spacing = timedelta(days=180) / items if items else timedelta(0)
    seller_ids = [row.id for row in seller_rows]
    loads = _Loads(database)
    try:
        batch: list[tuple[Any, ...]] = []
        for n in range(items):
            category = rng.choice(categories)
            thing = rng.choice(_THINGS[category]).replace("-", " ")
            colour, material = rng.choice(_COLOURS), rng.choice(_MATERIALS)
            # Listed one after another over the last 180 days, in the order they are inserted, as a live
            # catalog grows: the newest items are the table's last rows, as they are in production.
            created = oldest + n * spacing
            batch.append(
                (
                    uuid.uuid4(),
                    rng.choice(seller_ids),
                    f"{colour.title()} {material} {thing}",
                    f"A {colour} {thing} made of {material}. " + " ".join(rng.sample(_PHRASES, 2)),
                    rng.randrange(199, 25000),
                    "EUR" if rng.random() < 0.8 else rng.choice(["USD", "GBP"]),
                    rng.randrange(0, 60),
                    category,
                    "active",
                    created,
                    created,
                )
            )
            if len(batch) == _BATCH:
                await loads.put(batch)
                batch = []
        if batch:
            await loads.put(batch)
        await loads.drain()
    finally:
        loads.cancel()  # only left over when something failed
    await database.vacuum_analyze("users", "items")
    return Seeded(emails, items)


class _Loads:
    """Batches in flight: on PostgreSQL up to two COPYs run while the next batch is generated (the server's
    tsvector and index work is most of the seed's time, and it uses a second core); on SQLite one at a
    time, in order."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._in_flight: list[asyncio.Task[None]] = []
        self._limit = 2 if database.is_postgres else 1

    async def put(self, batch: list[tuple[Any, ...]]) -> None:
        if self._limit == 1:
            await _insert_items(self._database, batch)
            return
        if len(self._in_flight) >= self._limit:
            await self._in_flight.pop(0)
        self._in_flight.append(asyncio.create_task(_insert_items(self._database, batch)))

    async def drain(self) -> None:
        while self._in_flight:
            await self._in_flight.pop(0)

    def cancel(self) -> None:
        for task in self._in_flight:
            task.cancel()
        self._in_flight.clear()


async def _insert_items(database: Database, batch: list[tuple[Any, ...]]) -> None:
    if database.is_postgres:
        # COPY: Piccolo's multi-row INSERT spent most of the seed converting and numbering 11 000
        # parameters per batch (100 000 items: 9.6 s before, see benchmarks/README.md).
        await database.copy_records("items", ITEM_COLUMNS, batch)
        return
    async with database.write_transaction():
        await ItemRow.insert(*(ItemRow(**dict(zip(ITEM_COLUMNS, row, strict=True))) for row in batch))
