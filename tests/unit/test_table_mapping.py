"""The Piccolo Table classes are the schema's one description in code: the domain objects stored column for
column follow them, and the SQL written from them names their columns (no database needed)."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime

import pytest
from piccolo.querystring import QueryString

from market.adapters.db.database import _compiled_template, _CompiledQuery
from market.adapters.db.rows import ITEM_COLUMNS, MODERATION_COLUMNS, item_from_row, item_values
from market.adapters.db.tables import (
    ALL_TABLES,
    ItemRow,
    OrderRow,
    UserRow,
    columns,
    insert_sql,
    primary_key,
    select_list,
)
from market.domain.catalog import Item, ItemStatus
from market.domain.money import Money
from market.domain.users import User
from tests.support.factories import item


def test_an_item_has_one_field_per_column_of_the_items_table_in_the_same_order():
    # but its price, one `Money` stored in two columns
    stored_as = {"price": ("price_cents", "currency")}
    fields = tuple(column for f in dataclasses.fields(Item) for column in stored_as.get(f.name, (f.name,)))
    assert fields == ITEM_COLUMNS
    # the items table has the Item's columns first, then the ones only moderation writes
    assert columns(ItemRow) == ITEM_COLUMNS + MODERATION_COLUMNS


def test_a_user_has_one_field_per_column_of_the_users_table():
    assert {f.name for f in dataclasses.fields(User)} == set(columns(UserRow))


def test_an_item_read_back_from_its_stored_values_is_the_same_item():
    original = item(
        id="0b1d3f64-52c5-4b8e-9f7a-0d7c1c7a2b11", seller_id="5a0e4b9e-6d1c-4c59-8a43-7e2b3c4d5e6f"
    )
    row = {"id": original.id, **item_values(original)}
    assert set(row) == set(ITEM_COLUMNS)
    assert item_from_row(row) == original


def test_an_item_filled_from_a_row_equals_the_constructors_field_for_field():
    """`item_from_row` fills the slots itself: every field set, each to its own column's value (the values all
    differ, so two swapped columns show), the object an `Item` like any other (equal, hashable, frozen)."""
    built = Item(
        id="0b1d3f64-52c5-4b8e-9f7a-0d7c1c7a2b11",
        seller_id="5a0e4b9e-6d1c-4c59-8a43-7e2b3c4d5e6f",
        title="Blue mug",
        description="A blue ceramic mug.",
        price=Money(1999, "EUR"),
        stock=7,
        category="kitchen",
        status=ItemStatus.ARCHIVED,
        created_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        updated_at=datetime(2026, 2, 3, 4, 5, 6, tzinfo=UTC),
    )
    row = {"id": uuid.UUID(built.id), **item_values(built)}
    row["seller_id"] = uuid.UUID(built.seller_id)  # as asyncpg returns them
    filled = item_from_row(row)
    assert type(filled) is Item
    for field in dataclasses.fields(Item):
        # A slot left unset raises AttributeError here.
        assert getattr(filled, field.name) == getattr(built, field.name), field.name
    assert filled == built and hash(filled) == hash(built)
    with pytest.raises(dataclasses.FrozenInstanceError):
        filled.title = "changed"  # type: ignore[misc]


def test_a_row_with_an_unknown_item_status_is_refused():
    original = item(
        id="0b1d3f64-52c5-4b8e-9f7a-0d7c1c7a2b11", seller_id="5a0e4b9e-6d1c-4c59-8a43-7e2b3c4d5e6f"
    )
    row = {"id": original.id, **item_values(original), "status": "melted"}
    with pytest.raises(ValueError):
        item_from_row(row)


def test_sql_written_from_a_table_lists_its_columns_in_declaration_order():
    assert select_list(OrderRow, "o", without=("traceparent",)) == (
        "o.id, o.buyer_id, o.status, o.total_cents, o.currency, o.created_at, o.updated_at"
    )
    assert insert_sql(OrderRow, suffix="RETURNING id") == (
        "INSERT INTO orders (id, buyer_id, status, total_cents, currency, traceparent, created_at, updated_at)"
        " VALUES ({}, {}, {}, {}, {}, {}, {}, {}) RETURNING id"
    )


def test_leaving_out_a_column_the_table_does_not_have_is_an_error():
    with pytest.raises(ValueError, match="no column"):
        columns(OrderRow, without=("total",))


def test_every_table_has_a_primary_key_made_of_its_own_columns():
    for table in ALL_TABLES:
        assert primary_key(table)
        assert set(primary_key(table)) <= set(columns(table)), table._meta.tablename


@pytest.mark.parametrize("engine_type", ["postgres", "sqlite"])
@pytest.mark.parametrize(
    "template",
    [
        insert_sql(OrderRow),
        "SELECT 1",
        "SELECT '{{}}' AS braces, x FROM t WHERE a = {} AND b IN ({}, {})",
    ],
)
def test_written_sql_is_compiled_once_exactly_as_piccolo_compiles_it_on_every_call(engine_type, template):
    args = list(range(template.count("{}") - template.count("{{}}")))
    compiled = _CompiledQuery(template, _compiled_template(template, len(args), engine_type), args)
    assert compiled.compile_string(engine_type) == QueryString(template, *args).compile_string(engine_type)
