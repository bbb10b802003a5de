"""Accounts and the catalog, with full-text search on both engines."""

from .runner import Migration

_ROLES = "('buyer', 'seller', 'admin')"
_STATUSES = "('active', 'archived')"

POSTGRESQL = [
    f"""
    CREATE TABLE users (
        id UUID PRIMARY KEY,
        email VARCHAR(254) NOT NULL UNIQUE,
        display_name VARCHAR(100) NOT NULL,
        role VARCHAR(16) NOT NULL CHECK (role IN {_ROLES}),
        password_hash TEXT NOT NULL,
        created_at TIMESTAMPTZ NOT NULL
    )
    """,
    f"""
    CREATE TABLE items (
        id UUID PRIMARY KEY,
        seller_id UUID NOT NULL REFERENCES users (id),
        title VARCHAR(200) NOT NULL,
        description TEXT NOT NULL DEFAULT '',
        price_cents BIGINT NOT NULL CHECK (price_cents >= 0),
        currency VARCHAR(3) NOT NULL,
        stock INTEGER NOT NULL CHECK (stock >= 0),
        category VARCHAR(64) NOT NULL,
        status VARCHAR(16) NOT NULL CHECK (status IN {_STATUSES}),
        created_at TIMESTAMPTZ NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL,
        -- Kept in sync on every write by PostgreSQL itself. Weights: title A, category B, description C.
        search TSVECTOR GENERATED ALWAYS AS (
            setweight(to_tsvector('english', title), 'A')
            || setweight(to_tsvector('english', category), 'B')
            || setweight(to_tsvector('english', description), 'C')
        ) STORED
    )
    """,
    "CREATE INDEX items_search_idx ON items USING GIN (search)",
    # Browse: newest active items first, optionally per category or seller (keyset pagination).
    "CREATE INDEX items_active_recent_idx ON items (created_at DESC, id DESC) WHERE status = 'active'",
    "CREATE INDEX items_category_recent_idx ON items (category, created_at DESC, id DESC)"
    " WHERE status = 'active'",
    "CREATE INDEX items_seller_recent_idx ON items (seller_id, created_at DESC, id DESC)",
]

SQLITE = [
    f"""
    CREATE TABLE users (
        id UUID PRIMARY KEY,
        email VARCHAR(254) NOT NULL UNIQUE,
        display_name VARCHAR(100) NOT NULL,
        role VARCHAR(16) NOT NULL CHECK (role IN {_ROLES}),
        password_hash TEXT NOT NULL,
        created_at TIMESTAMPTZ NOT NULL
    )
    """,
    f"""
    CREATE TABLE items (
        id UUID PRIMARY KEY,
        seller_id UUID NOT NULL REFERENCES users (id),
        title VARCHAR(200) NOT NULL,
        description TEXT NOT NULL DEFAULT '',
        price_cents BIGINT NOT NULL CHECK (price_cents >= 0),
        currency VARCHAR(3) NOT NULL,
        stock INTEGER NOT NULL CHECK (stock >= 0),
        category VARCHAR(64) NOT NULL,
        status VARCHAR(16) NOT NULL CHECK (status IN {_STATUSES}),
        created_at TIMESTAMPTZ NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL
    )
    """,
    # External-content FTS5 index over items, keyed by the items table's rowid and kept in sync by triggers.
    # (Never VACUUM this file without then running: INSERT INTO items_fts(items_fts) VALUES('rebuild').)
    """
    CREATE VIRTUAL TABLE items_fts USING fts5(
        title, category, description, content='items', content_rowid='rowid', tokenize='porter unicode61'
    )
    """,
    """
    CREATE TRIGGER items_fts_insert AFTER INSERT ON items BEGIN
        INSERT INTO items_fts (rowid, title, category, description)
        VALUES (new.rowid, new.title, new.category, new.description);
    END
    """,
    """
    CREATE TRIGGER items_fts_delete AFTER DELETE ON items BEGIN
        INSERT INTO items_fts (items_fts, rowid, title, category, description)
        VALUES ('delete', old.rowid, old.title, old.category, old.description);
    END
    """,
    """
    CREATE TRIGGER items_fts_update AFTER UPDATE OF title, category, description ON items BEGIN
        INSERT INTO items_fts (items_fts, rowid, title, category, description)
        VALUES ('delete', old.rowid, old.title, old.category, old.description);
        INSERT INTO items_fts (rowid, title, category, description)
        VALUES (new.rowid, new.title, new.category, new.description);
    END
    """,
    "CREATE INDEX items_active_recent_idx ON items (created_at DESC, id DESC) WHERE status = 'active'",
    "CREATE INDEX items_category_recent_idx ON items (category, created_at DESC, id DESC)"
    " WHERE status = 'active'",
    "CREATE INDEX items_seller_recent_idx ON items (seller_id, created_at DESC, id DESC)",
]

MIGRATION = Migration(version="0001_initial", postgresql=POSTGRESQL, sqlite=SQLITE)
