"""Search in tiers (adapters/db/search.py): the title's words and the title's and category's words each get a
stored tsvector and a GIN index of their own on PostgreSQL, so that each tier is read by its own index with its
own statistics (a weight-restricted query on `search`, `'mug':A`, is estimated as if unrestricted: 28 250 rows
expected, 0 found, a 97 ms scan; benchmarks/README.md, search_latency.py). Adding the stored columns rewrites
`items` under an exclusive lock: about 1.6 s per 100 000 items. SQLite's FTS5 index already filters by column."""

from .runner import Migration

_POSTGRESQL = [
    "ALTER TABLE items"
    " ADD COLUMN search_title TSVECTOR GENERATED ALWAYS AS (to_tsvector('english', title)) STORED,"
    " ADD COLUMN search_head TSVECTOR GENERATED ALWAYS AS"
    " (to_tsvector('english', title || ' ' || category)) STORED",
    "CREATE INDEX items_search_title_idx ON items USING GIN (search_title)",
    "CREATE INDEX items_search_head_idx ON items USING GIN (search_head)",
]

MIGRATION = Migration(version="0012_search_tiers", postgresql=_POSTGRESQL, sqlite=[])
