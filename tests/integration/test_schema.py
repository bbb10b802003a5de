"""Migrations and the schema they build, on both engines."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid

import asyncpg
import pytest
from piccolo.columns import UUID, BigInt, BigSerial, Integer, Text, Timestamptz, Varchar

from market.adapters.db.database import Database
from market.adapters.db.migrations import HEAD, MIGRATIONS, TABLES
from market.adapters.db.migrations.runner import apply_migrations
from market.adapters.db.repositories import PiccoloItemRepository, PiccoloUserRepository
from market.adapters.db.tables import ALL_TABLES, primary_key
from market.domain.users import UserStatus
from tests.support.database import add_item, add_user, count, new_user, open_database

CONSTRAINT_VIOLATIONS = (asyncpg.exceptions.CheckViolationError, sqlite3.IntegrityError)

# Columns the database keeps for itself that the ORM never reads or writes.
DATABASE_ONLY_COLUMNS = {"postgresql": {"items": {"search", "search_title", "search_head"}}, "sqlite": {}}


async def _ledger(db: Database) -> list[str]:
    return [
        row["version"] for row in await db.fetch("SELECT version FROM market_migrations ORDER BY version")
    ]


async def test_migrating_a_new_database_applies_every_migration_and_records_the_head(bare_db):
    applied = await bare_db.migrate()
    assert applied == [m.version for m in MIGRATIONS]
    assert await _ledger(bare_db) == [m.version for m in MIGRATIONS]
    assert HEAD in await _ledger(bare_db)


async def test_migrating_again_applies_nothing_and_keeps_the_data(bare_db):
    await bare_db.migrate()
    item = await add_item(bare_db, await add_user(bare_db))
    assert await bare_db.migrate() == []
    assert await _ledger(bare_db) == [m.version for m in MIGRATIONS]
    assert await count(bare_db, "users") == 1
    assert await PiccoloItemRepository(bare_db).get(item.id) == item


async def test_two_workers_migrating_at_once_apply_each_migration_exactly_once(database_url):
    first, second = open_database(database_url), open_database(database_url)
    await first.start()
    await second.start()
    try:
        applied = await asyncio.gather(first.migrate(), second.migrate())
    finally:
        await first.close()
        await second.close()
    assert sorted(applied, key=len) == [[], [m.version for m in MIGRATIONS]]


def _expected_type(column, engine: str) -> tuple[str, int | None]:
    """(type as the database reports it, varchar length) for a Piccolo column."""
    if engine == "sqlite" and isinstance(column, BigInt) and column._meta.primary_key:
        return ("INTEGER", None)  # SQLite numbers rows itself only for a key declared INTEGER PRIMARY KEY
    if isinstance(column, Varchar):
        return (
            ("character varying", column.length)
            if engine == "postgresql"
            else (f"VARCHAR({column.length})", None)
        )
    names = {
        UUID: ("uuid", "UUID"),
        Text: ("text", "TEXT"),
        BigInt: ("bigint", "BIGINT"),
        BigSerial: ("bigint", "INTEGER"),  # an identity column on PostgreSQL, the rowid on SQLite
        Integer: ("integer", "INTEGER"),
        Timestamptz: ("timestamp with time zone", "TIMESTAMPTZ"),
    }
    assert type(column) in names, f"teach this test how the database reports {type(column).__name__} columns"
    postgres_name, sqlite_name = names[type(column)]
    return (postgres_name if engine == "postgresql" else sqlite_name, None)


async def _database_columns(db: Database, table: str) -> dict[str, dict]:
    if db.is_postgres:
        rows = await db.fetch(
            "SELECT column_name, data_type, character_maximum_length, is_nullable"
            " FROM information_schema.columns WHERE table_schema = 'public' AND table_name = {}",
            table,
        )
        return {
            r["column_name"]: {
                "type": (r["data_type"], r["character_maximum_length"]),
                "not_null": r["is_nullable"] == "NO",
            }
            for r in rows
        }
    rows = await db.fetch(f"PRAGMA table_info({table})")
    return {r["name"]: {"type": (r["type"], None), "not_null": bool(r["notnull"] or r["pk"])} for r in rows}


async def _primary_key(db: Database, table: str) -> tuple[str, ...]:
    """The primary key's columns, in key order."""
    if db.is_postgres:
        rows = await db.fetch(
            "SELECT a.attname AS name FROM pg_index i, unnest(i.indkey) WITH ORDINALITY AS k(attnum, n)"
            " JOIN pg_attribute a ON a.attnum = k.attnum"
            " WHERE i.indrelid = {}::regclass AND a.attrelid = i.indrelid AND i.indisprimary ORDER BY k.n",
            table,
        )
        return tuple(r["name"] for r in rows)
    rows = await db.fetch(f"PRAGMA table_info({table})")
    return tuple(r["name"] for r in sorted((r for r in rows if r["pk"]), key=lambda r: r["pk"]))


async def _unique_columns(db: Database, table: str) -> set[str]:
    """Single-column UNIQUE constraints other than the primary key."""
    if db.is_postgres:
        rows = await db.fetch(
            "SELECT a.attname AS name FROM pg_index i"
            " JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)"
            " WHERE i.indrelid = {}::regclass AND i.indisunique AND NOT i.indisprimary AND i.indnatts = 1",
            table,
        )
        return {r["name"] for r in rows}
    unique: set[str] = set()
    for index in await db.fetch(f"PRAGMA index_list({table})"):
        if index["unique"] and index["origin"] == "u":
            columns = await db.fetch(f"PRAGMA index_info({index['name']})")
            if len(columns) == 1:
                unique.add(columns[0]["name"])
    return unique


@pytest.mark.parametrize("table", ALL_TABLES, ids=lambda t: t._meta.tablename)
async def test_the_piccolo_table_classes_match_the_migrated_columns(db, table):
    tablename = table._meta.tablename
    in_database = await _database_columns(db, tablename)
    extras = DATABASE_ONLY_COLUMNS[db.engine_name].get(tablename, set())
    declared = {column._meta.db_column_name: column for column in table._meta.columns}

    assert set(in_database) - extras == set(declared)
    for name, column in declared.items():
        assert in_database[name]["type"] == _expected_type(column, db.engine_name), name
        assert in_database[name]["not_null"] is (not column._meta.null), name
    unique_declared = {name for name, column in declared.items() if column._meta.unique}
    assert await _unique_columns(db, tablename) == unique_declared
    # Partitioned by month on PostgreSQL (m0006): a partitioned table's key would have to hold occurred_at.
    unkeyed = db.is_postgres and tablename == "analytics_events"
    assert await _primary_key(db, tablename) == (() if unkeyed else primary_key(table))


def test_there_is_a_piccolo_table_class_for_every_table_the_migrations_create():
    assert sorted(table._meta.tablename for table in ALL_TABLES) == sorted(TABLES)


@pytest.mark.parametrize(("column", "value"), [("stock", -1), ("price_cents", -1)])
async def test_the_database_refuses_negative_stock_or_price_even_from_raw_sql(db, column, value):
    item = await add_item(db, await add_user(db), stock=3, price_cents=500)
    with pytest.raises(CONSTRAINT_VIOLATIONS):
        await db.fetch(f"UPDATE items SET {column} = {{}} WHERE id = {{}}", value, uuid.UUID(item.id))
    assert await PiccoloItemRepository(db).get(item.id) == item


async def test_the_conditional_stock_decrement_stops_at_zero(db):
    item = await add_item(db, await add_user(db), stock=2)
    sql = "UPDATE items SET stock = stock - {} WHERE id = {} AND stock >= {} RETURNING stock"
    assert [r["stock"] for r in await db.fetch(sql, 2, uuid.UUID(item.id), 2)] == [0]
    assert await db.fetch(sql, 1, uuid.UUID(item.id), 1) == []


async def test_accounts_from_before_revocation_become_active_at_token_version_zero(bare_db):
    before = [m for m in MIGRATIONS if m.version < "0004"]
    await apply_migrations(bare_db.engine, before)
    user = new_user()
    await bare_db.fetch(
        "INSERT INTO users (id, email, display_name, role, password_hash, created_at)"
        " VALUES ({}, {}, {}, {}, {}, {})",
        uuid.UUID(user.id),
        user.email,
        user.display_name,
        user.role.value,
        user.password_hash,
        user.created_at,
    )
    await bare_db.migrate()
    assert await PiccoloUserRepository(bare_db).get(user.id) == user
    assert (user.token_version, user.status, user.last_login_at) == (0, UserStatus.ACTIVE, None)


@pytest.mark.parametrize(("column", "value"), [("status", "banned"), ("token_version", -1)])
async def test_the_database_refuses_an_unknown_account_status_or_a_negative_token_version(db, column, value):
    user = await add_user(db)
    with pytest.raises(CONSTRAINT_VIOLATIONS):
        await db.fetch(f"UPDATE users SET {column} = {{}} WHERE id = {{}}", value, uuid.UUID(user.id))
    assert await PiccoloUserRepository(db).get(user.id) == user


async def test_disabled_users_have_a_partial_index_for_the_catalogs_seller_check(db):
    # Every browse leaves out disabled sellers' items (rows.on_sale); without this index PostgreSQL read the
    # whole users table for each page (m0016).
    if db.is_postgres:
        rows = await db.fetch("SELECT indexdef AS sql FROM pg_indexes WHERE indexname = 'users_disabled_idx'")
    else:
        rows = await db.fetch("SELECT sql FROM sqlite_master WHERE name = 'users_disabled_idx'")
    [row] = rows
    assert "(id)" in row["sql"] and "'disabled'" in row["sql"], row["sql"]
