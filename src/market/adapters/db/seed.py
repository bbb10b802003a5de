"""Demo data: sellers with realistic catalog items, inserted in bulk."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta

from .database import Database
from .tables import ItemRow, UserRow

DEMO_PASSWORD = "demo-password-123"
_BATCH = 1000  # rows per INSERT: 11 columns x 1000 stays far below both engines' parameter limits

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


async def seed_demo_data(
    database: Database, *, sellers: int, items: int, password_hash: str, rng_seed: int = 42
) -> tuple[int, int]:
    """Insert `sellers` seller accounts (all with DEMO_PASSWORD) and `items` items spread over them.
    Returns (sellers, items) inserted."""
    rng = random.Random(rng_seed)
    now = datetime.now(UTC)
    run = uuid.uuid4().hex[:8]  # lets seed run twice without e-mail clashes
    seller_rows = [
        UserRow(
            id=uuid.uuid4(),
            email=f"seller{n}-{run}@demo.market.dev",
            display_name=f"{rng.choice(_COLOURS).title()} {rng.choice(_MATERIALS).title()} Studio {n}",
            role="seller",
            password_hash=password_hash,
            created_at=now - timedelta(days=365),
        )
        for n in range(sellers)
    ]
    for start in range(0, len(seller_rows), _BATCH):
        await UserRow.insert(*seller_rows[start : start + _BATCH])
    if not seller_rows:
        return 0, 0

    categories = list(_THINGS)
    batch: list[ItemRow] = []
    for n in range(items):
        category = rng.choice(categories)
        thing = rng.choice(_THINGS[category]).replace("-", " ")
        colour, material = rng.choice(_COLOURS), rng.choice(_MATERIALS)
        created = now - timedelta(seconds=rng.randrange(0, 180 * 86400), microseconds=n)
        batch.append(
            ItemRow(
                id=uuid.uuid4(),
                seller_id=rng.choice(seller_rows).id,
                title=f"{colour.title()} {material} {thing}",
                description=f"A {colour} {thing} made of {material}. " + " ".join(rng.sample(_PHRASES, 2)),
                price_cents=rng.randrange(199, 25000),
                currency="EUR" if rng.random() < 0.8 else rng.choice(["USD", "GBP"]),
                stock=rng.randrange(0, 60),
                category=category,
                status="active",
                created_at=created,
                updated_at=created,
            )
        )
        if len(batch) == _BATCH:
            await _insert_items(database, batch)
            batch = []
    if batch:
        await _insert_items(database, batch)
    return sellers, items


async def _insert_items(database: Database, batch: list[ItemRow]) -> None:
    async with database.write_transaction():
        await ItemRow.insert(*batch)
