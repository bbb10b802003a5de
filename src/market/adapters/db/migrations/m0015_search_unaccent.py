"""Search that ignores accents on PostgreSQL too: `creme brulee` finds "Crème brûlée", `echarpe` finds "ÉCHARPE",
as SQLite's FTS5 index (`unicode61`, diacritics removed) always did. A text search configuration of our own,
`market_search`: PostgreSQL's `english` with the `unaccent` dictionary (contrib's `unaccent` extension, trusted:
the database's owner may create it) in front of the English stemmer for words with non-ASCII letters. The Greek
final sigma is written as a plain sigma on both sides (`translate`), so `οδος` finds "ΟΔΟΣ" (lowered to `οδοσ`)
as SQLite does.

The three stored tsvectors are made again with it (generated columns cannot change their expression): this
rewrites `items` under an exclusive lock, about 1.6 s per 100 000 items (m0012's figure), and rebuilds their
GIN indexes. Queries use the same configuration (adapters/db/search.py, `_QUERY`)."""

from .runner import Migration


def _vector(column: str) -> str:
    return f"to_tsvector('market_search', translate({column}, 'ς', 'σ'))"


_HEAD = "title || ' ' || category"

_POSTGRESQL = [
    "CREATE EXTENSION IF NOT EXISTS unaccent",
    "CREATE TEXT SEARCH CONFIGURATION market_search (COPY = english)",
    "ALTER TEXT SEARCH CONFIGURATION market_search ALTER MAPPING FOR hword, hword_part, word"
    " WITH unaccent, english_stem",
    "ALTER TABLE items DROP COLUMN search, DROP COLUMN search_title, DROP COLUMN search_head",
    "ALTER TABLE items"
    " ADD COLUMN search TSVECTOR GENERATED ALWAYS AS ("
    f"setweight({_vector('title')}, 'A') || setweight({_vector('category')}, 'B')"
    f" || setweight({_vector('description')}, 'C')) STORED,"
    f" ADD COLUMN search_title TSVECTOR GENERATED ALWAYS AS ({_vector('title')}) STORED,"
    f" ADD COLUMN search_head TSVECTOR GENERATED ALWAYS AS ({_vector(_HEAD)}) STORED",
    "CREATE INDEX items_search_idx ON items USING GIN (search)",
    "CREATE INDEX items_search_title_idx ON items USING GIN (search_title)",
    "CREATE INDEX items_search_head_idx ON items USING GIN (search_head)",
]

MIGRATION = Migration(version="0015_search_unaccent", postgresql=_POSTGRESQL, sqlite=[])
