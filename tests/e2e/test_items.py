"""Items over HTTP: create, read, change, archive, who may do which, and what is refused."""

from __future__ import annotations

import uuid

import pytest

from tests.support.live_server import auth, register

from .helpers import RFC3339_UTC, assert_problem, create_admin, create_item, item_body, problem_type

ITEMS = "/api/v1/items"
ITEM_FIELDS = {
    "id",
    "seller_id",
    "title",
    "description",
    "price_cents",
    "currency",
    "stock",
    "category",
    "status",
    "created_at",
    "updated_at",
}


@pytest.fixture
def seller(client):
    return register(client, role="seller")


@pytest.fixture
def item(client, seller):
    return create_item(client, seller)


def test_a_seller_lists_an_item(client, seller):
    r = client.post(ITEMS, json=item_body(), headers=auth(seller))
    assert r.status_code == 201, r.text
    body = r.json()
    assert set(body) == ITEM_FIELDS
    assert body["seller_id"] == seller["id"]
    assert body["status"] == "active"
    assert {k: body[k] for k in item_body()} == item_body()
    assert RFC3339_UTC.match(body["created_at"]) and RFC3339_UTC.match(body["updated_at"])
    assert client.get(f"{ITEMS}/{body['id']}").json() == body


def test_description_is_optional(client, seller):
    body = item_body()
    del body["description"]
    r = client.post(ITEMS, json=body, headers=auth(seller))
    assert r.status_code == 201, r.text
    assert r.json()["description"] == ""


def test_listing_needs_a_token(client):
    assert_problem(client.post(ITEMS, json=item_body()), 401)


def test_a_buyer_may_not_list_items(client):
    buyer = register(client, role="buyer")
    assert_problem(client.post(ITEMS, json=item_body(), headers=auth(buyer)), 403)


def test_an_admin_may_not_list_items(client, live_server):
    admin = create_admin(live_server, client)
    assert_problem(client.post(ITEMS, json=item_body(), headers=auth(admin)), 403)


def test_the_owner_changes_some_fields(client, seller, item):
    r = client.patch(f"{ITEMS}/{item['id']}", json={"price_cents": 2500, "stock": 0}, headers=auth(seller))
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["price_cents"], body["stock"]) == (2500, 0)
    assert body["title"] == item["title"] and body["currency"] == item["currency"]
    assert body["updated_at"] >= item["updated_at"]
    assert client.get(f"{ITEMS}/{item['id']}").json()["price_cents"] == 2500


def test_another_seller_may_not_change_or_archive_an_item(client, item):
    other = register(client, role="seller")
    assert_problem(
        client.patch(f"{ITEMS}/{item['id']}", json={"price_cents": 1}, headers=auth(other)),
        403,
        type_uri=problem_type("forbidden"),
    )
    assert_problem(client.delete(f"{ITEMS}/{item['id']}", headers=auth(other)), 403)
    still = client.get(f"{ITEMS}/{item['id']}")
    assert still.status_code == 200 and still.json()["price_cents"] == item["price_cents"]


@pytest.mark.parametrize("status", ["archived", "suspended"])
def test_another_sellers_hidden_item_is_not_found_whatever_the_method(client, live_server, seller, status):
    """A hidden item does not exist for another seller: DELETE answers 404 like PATCH, never a 403 that
    would reveal it, and nothing changes."""
    item = create_item(client, seller)
    admin = create_admin(live_server, client)
    r = client.patch(
        f"/api/v1/admin/items/{item['id']}", json={"status": status, "reason": "x"}, headers=auth(admin)
    )
    assert r.status_code == 200, r.text
    other, url = register(client, role="seller"), f"{ITEMS}/{item['id']}"

    assert_problem(client.delete(url, headers=auth(other)), 404, type_uri=problem_type("not-found"))
    assert_problem(client.patch(url, json={"stock": 1}, headers=auth(other)), 404)
    assert_problem(client.patch(url, json={"status": "active"}, headers=auth(other)), 404)
    assert_problem(client.get(url), 404)  # still hidden
    restored = client.patch(
        f"/api/v1/admin/items/{item['id']}", json={"status": "active", "reason": "x"}, headers=auth(admin)
    )
    assert restored.json()["stock"] == item["stock"] != 1


def test_a_buyer_may_not_change_or_archive_an_item(client, item):
    buyer = register(client, role="buyer")
    assert_problem(client.patch(f"{ITEMS}/{item['id']}", json={"stock": 1}, headers=auth(buyer)), 403)
    assert_problem(client.delete(f"{ITEMS}/{item['id']}", headers=auth(buyer)), 403)


def test_changing_or_archiving_needs_a_token(client, item):
    assert_problem(client.patch(f"{ITEMS}/{item['id']}", json={"stock": 1}), 401)
    assert_problem(client.delete(f"{ITEMS}/{item['id']}"), 401)


def test_an_admin_may_change_and_archive_any_item(client, live_server, seller, item):
    admin = create_admin(live_server, client)
    r = client.patch(f"{ITEMS}/{item['id']}", json={"title": "Moderated mug"}, headers=auth(admin))
    assert r.status_code == 200, r.text
    assert r.json()["title"] == "Moderated mug"
    assert r.json()["seller_id"] == seller["id"]
    assert client.delete(f"{ITEMS}/{item['id']}", headers=auth(admin)).status_code == 204
    assert_problem(client.get(f"{ITEMS}/{item['id']}"), 404)


@pytest.mark.parametrize(
    "changes",
    [
        {"seller_id": str(uuid.uuid4())},
        # A seller archives and restores their own item through `status` (issue 15), but never suspends it.
        {"status": "suspended"},
        {"id": str(uuid.uuid4())},
        {"created_at": "2020-01-01T00:00:00Z"},
    ],
)
def test_fields_that_are_not_seller_writable_are_refused_on_patch(client, seller, item, changes):
    r = client.patch(f"{ITEMS}/{item['id']}", json={**changes, "stock": 9}, headers=auth(seller))
    assert_problem(r, 422, fields=set(changes))
    assert client.get(f"{ITEMS}/{item['id']}").json() == item


@pytest.mark.parametrize("extra", [{"seller_id": str(uuid.uuid4())}, {"status": "archived"}])
def test_fields_that_are_not_seller_writable_are_refused_on_create(client, seller, extra):
    assert_problem(client.post(ITEMS, json=item_body(**extra), headers=auth(seller)), 422, fields=set(extra))


def test_archiving_answers_204_then_the_item_is_gone(client, seller):
    category = f"archive-{uuid.uuid4().hex[:8]}"
    item = create_item(client, seller, category=category)
    r = client.delete(f"{ITEMS}/{item['id']}", headers=auth(seller))
    assert r.status_code == 204
    assert r.content == b""
    assert_problem(client.get(f"{ITEMS}/{item['id']}"), 404, type_uri=problem_type("not-found"))
    assert client.get(ITEMS, params={"category": category}).json() == {"items": [], "next_cursor": None}
    assert client.get(ITEMS, params={"seller_id": seller["id"]}).json()["items"] == []
    assert_problem(client.patch(f"{ITEMS}/{item['id']}", json={"stock": 1}, headers=auth(seller)), 404)
    assert client.delete(f"{ITEMS}/{item['id']}", headers=auth(seller)).status_code == 204  # idempotent


def test_an_edit_refused_half_way_changes_nothing(client, seller):
    item = create_item(client, seller)
    url = f"{ITEMS}/{item['id']}"
    # Archive and rename in one request: an archived item's fields are not edited, so neither happens.
    refused = client.patch(url, json={"status": "archived", "title": "Renamed"}, headers=auth(seller))
    assert_problem(refused, 404)
    assert client.get(url).json()["title"] == item["title"]
    assert client.delete(url, headers=auth(seller)).status_code == 204
    # Restore with a title the domain refuses: the item stays archived.
    refused = client.patch(url, json={"status": "active", "title": "   "}, headers=auth(seller))
    assert_problem(refused, 422)
    assert_problem(client.get(url), 404)


@pytest.mark.parametrize(
    ("bad", "fields"),
    [
        ({"price_cents": -1}, {"price_cents"}),
        ({"price_cents": 19.99}, {"price_cents"}),
        ({"price_cents": "1999"}, {"price_cents"}),
        ({"title": ""}, {"title"}),
        ({"title": "   "}, {"title"}),
        ({"currency": "XXX"}, {"currency"}),
        ({"currency": "eur"}, {"currency"}),
        ({"stock": -1}, {"stock"}),
        ({"stock": 1.5}, {"stock"}),
        ({"category": ""}, {"category"}),
        (
            {"price_cents": -5, "title": "", "currency": "ZZZ", "stock": -3},
            {"price_cents", "title", "currency", "stock"},
        ),
    ],
)
def test_invalid_item_fields_are_422_with_one_error_per_field(client, seller, bad, fields):
    r = client.post(ITEMS, json=item_body(**bad), headers=auth(seller))
    body = assert_problem(r, 422, type_uri=problem_type("validation-error"), fields=fields)
    assert len(body["errors"]) == len(fields)


def test_missing_item_fields_are_each_named(client, seller):
    r = client.post(ITEMS, json={"description": "only this"}, headers=auth(seller))
    assert_problem(r, 422, fields={"title", "price_cents", "currency", "stock", "category"})


def test_invalid_changes_are_422_and_change_nothing(client, seller, item):
    r = client.patch(
        f"{ITEMS}/{item['id']}",
        json={"price_cents": -1, "stock": -1, "title": "Fine title"},
        headers=auth(seller),
    )
    assert_problem(r, 422, fields={"price_cents", "stock"})
    assert client.get(f"{ITEMS}/{item['id']}").json() == item


def test_a_body_that_is_not_an_object_is_refused(client, seller):
    r = client.post(ITEMS, content=b"[1, 2, 3]", headers={**auth(seller), "Content-Type": "application/json"})
    assert r.status_code in (400, 422)
    assert_problem(r, r.status_code)


@pytest.mark.parametrize("item_id", [str(uuid.uuid4()), "not-an-id", "12345", "%27%20OR%201%3D1"])
def test_unknown_or_malformed_item_ids_are_404(client, seller, item_id):
    assert_problem(client.get(f"{ITEMS}/{item_id}"), 404, type_uri=problem_type("not-found"))
    assert_problem(client.patch(f"{ITEMS}/{item_id}", json={"stock": 1}, headers=auth(seller)), 404)
    assert_problem(client.delete(f"{ITEMS}/{item_id}", headers=auth(seller)), 404)


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"title": "Blue\x00mug"}, "title"),
        ({"description": "a\x00b"}, "description"),
        ({"category": "\x00"}, "category"),
    ],
)
def test_nul_characters_in_text_are_422_not_a_server_error(client, seller, bad, field):
    body = assert_problem(
        client.post(ITEMS, json=item_body(**bad), headers=auth(seller)), 422, fields={field}
    )
    assert "NUL" in body["errors"][0]["message"]


def test_a_whole_number_written_with_a_decimal_point_is_that_integer(client, seller):
    """JSON has one number type and JSON Schema counts 1999.0 as an integer; it is stored as exactly 1999."""
    r = client.post(ITEMS, json=item_body(price_cents=1999.0, stock=3.0), headers=auth(seller))
    assert r.status_code == 201, r.text
    assert '"price_cents":1999,' in r.text.replace(" ", "")
    assert (r.json()["price_cents"], r.json()["stock"]) == (1999, 3)
