"""Item moderation over HTTP on both engines: admins suspend, archive and restore any item with a reason
(audited); a suspended item is hidden like an archived one and its seller cannot bring it back; a seller
restores their own archived item."""

from __future__ import annotations

import uuid

import pytest

from tests.support.live_server import auth, register

from .helpers import assert_problem, create_admin, create_item, problem_type, unique_word

ADMIN_ITEMS = "/api/v1/admin/items"
ITEMS = "/api/v1/items"


@pytest.fixture(scope="module")
def people(live_server):
    with live_server.client() as client:
        return {
            "seller": register(client, "seller"),
            "other_seller": register(client, "seller"),
            "buyer": register(client),
            "admin": create_admin(live_server, client),
        }


@pytest.fixture
def item(client, people):
    return create_item(client, people["seller"], title=f"{unique_word()} lamp")


def _visible(client, item) -> bool:
    """Whether buyers can see the item: by id, in browsing and in search."""
    by_id = client.get(f"{ITEMS}/{item['id']}").status_code == 200
    word = item["title"].split()[0]
    found = [i["id"] for i in client.get(ITEMS, params={"q": word}).json()["items"]]
    browsed = [
        i["id"]
        for i in client.get(ITEMS, params={"seller_id": item["seller_id"], "limit": 100}).json()["items"]
    ]
    assert by_id == (item["id"] in found) == (item["id"] in browsed)
    return by_id


def test_only_admins_moderate(client, people, item):
    body = {"status": "suspended", "reason": "counterfeit"}
    url = f"{ADMIN_ITEMS}/{item['id']}"
    assert_problem(client.patch(url, json=body), 401)
    for someone in ("buyer", "seller", "other_seller"):
        assert_problem(client.patch(url, json=body, headers=auth(people[someone])), 403)
    assert _visible(client, item)
    r = client.patch(url, json=body, headers=auth(people["admin"]))
    assert r.status_code == 200 and r.json()["status"] == "suspended"


def test_a_suspended_item_is_hidden_and_its_seller_cannot_bring_it_back(client, people, item):
    seller, admin = people["seller"], people["admin"]
    r = client.patch(
        f"{ADMIN_ITEMS}/{item['id']}",
        json={"status": "suspended", "reason": "counterfeit"},
        headers=auth(admin),
    )
    assert r.status_code == 200

    assert not _visible(client, item)
    assert (
        client.put(
            f"/api/v1/cart/items/{item['id']}", json={"quantity": 1}, headers=auth(people["buyer"])
        ).status_code
        == 404
    )
    for body in ({"status": "active"}, {"status": "archived"}):
        assert_problem(client.patch(f"{ITEMS}/{item['id']}", json=body, headers=auth(seller)), 403)
    assert_problem(client.patch(f"{ITEMS}/{item['id']}", json={"title": "x"}, headers=auth(seller)), 404)
    assert client.delete(f"{ITEMS}/{item['id']}", headers=auth(seller)).status_code == 204  # a no-op
    assert_problem(
        client.patch(f"{ITEMS}/{item['id']}", json={"status": "active"}, headers=auth(seller)), 403
    )

    restored = client.patch(
        f"{ADMIN_ITEMS}/{item['id']}",
        json={"status": "active", "reason": "appeal upheld"},
        headers=auth(admin),
    )
    assert restored.json()["status"] == "active"
    assert _visible(client, item)


def test_moderation_is_audited_with_its_reason(client, people, item):
    admin = people["admin"]
    client.patch(
        f"{ADMIN_ITEMS}/{item['id']}",
        json={"status": "archived", "reason": "duplicate listing"},
        headers=auth(admin),
    )
    trail = client.get("/api/v1/admin/audit", params={"target_id": item["id"]}, headers=auth(admin)).json()
    [entry] = trail["items"]
    assert (entry["action"], entry["target_type"], entry["actor_id"]) == (
        "item.moderated",
        "item",
        admin["id"],
    )
    assert entry["details"] == {
        "status_from": "active",
        "status_to": "archived",
        "reason": "duplicate listing",
    }


def test_a_seller_archives_and_restores_their_own_item_and_may_change_it_in_the_same_request(
    client, people, item
):
    seller = people["seller"]
    assert client.delete(f"{ITEMS}/{item['id']}", headers=auth(seller)).status_code == 204
    assert not _visible(client, item)

    r = client.patch(
        f"{ITEMS}/{item['id']}", json={"status": "active", "price_cents": 4242}, headers=auth(seller)
    )

    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["price_cents"]) == ("active", 4242)
    assert _visible(client, item)
    archived = client.patch(f"{ITEMS}/{item['id']}", json={"status": "archived"}, headers=auth(seller))
    assert archived.json()["status"] == "archived"
    assert_problem(
        client.patch(
            f"{ITEMS}/{item['id']}", json={"status": "active"}, headers=auth(people["other_seller"])
        ),
        404,  # another seller's archived item is hidden: a 403 would reveal it
    )


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"status": "suspended"}, {"reason"}),
        ({"status": "gone", "reason": "x"}, {"status"}),
        ({"status": "suspended", "reason": "  "}, {"reason"}),
        ({"status": "suspended", "reason": "x" * 501}, {"reason"}),
        ({"status": "active", "reason": "x", "title": "y"}, {"title"}),
    ],
)
def test_a_bad_moderation_is_a_422_naming_the_field(client, people, item, body, fields):
    r = client.patch(f"{ADMIN_ITEMS}/{item['id']}", json=body, headers=auth(people["admin"]))
    assert_problem(r, 422, type_uri=problem_type("validation-error"), fields=fields)


def test_a_seller_cannot_suspend_through_the_items_route(client, people, item):
    r = client.patch(f"{ITEMS}/{item['id']}", json={"status": "suspended"}, headers=auth(people["seller"]))
    assert_problem(r, 422, fields={"status"})


@pytest.mark.parametrize("item_id", [str(uuid.uuid4()), "not-an-id"])
def test_moderating_an_unknown_item_is_404(client, people, item_id):
    r = client.patch(
        f"{ADMIN_ITEMS}/{item_id}", json={"status": "active", "reason": "x"}, headers=auth(people["admin"])
    )
    assert_problem(r, 404)


def test_an_admins_status_and_fields_in_one_edit_are_one_audit_entry(client, people, item):
    """One write, one entry: the status change with the fields changed alongside it."""
    admin, seller = people["admin"], people["seller"]
    archived = client.patch(f"{ITEMS}/{item['id']}", json={"status": "archived"}, headers=auth(seller))
    assert archived.status_code == 200, archived.text  # the seller's own write: not audited
    r = client.patch(
        f"{ITEMS}/{item['id']}", json={"status": "active", "price_cents": 1}, headers=auth(admin)
    )
    assert r.status_code == 200, r.text
    trail = client.get("/api/v1/admin/audit", params={"target_id": item["id"]}, headers=auth(admin)).json()
    assert [(e["action"], e["details"]) for e in trail["items"]] == [
        (
            "item.moderated",
            {
                "status_from": "archived",
                "status_to": "active",
                "reason": None,
                "price_cents_from": item["price_cents"],
                "price_cents_to": 1,
            },
        )
    ]


def test_an_admins_edit_and_delete_through_the_items_api_are_audited(client, people, item):
    """Every admin write appends an audit entry, also through `PATCH` and `DELETE /items/{id}`; a seller's
    own do not."""
    admin, seller = people["admin"], people["seller"]
    assert client.patch(f"{ITEMS}/{item['id']}", json={"stock": 99}, headers=auth(seller)).status_code == 200
    edited = client.patch(f"{ITEMS}/{item['id']}", json={"price_cents": 1}, headers=auth(admin))
    assert edited.status_code == 200, edited.text
    assert client.delete(f"{ITEMS}/{item['id']}", headers=auth(admin)).status_code == 204

    trail = client.get("/api/v1/admin/audit", params={"target_id": item["id"]}, headers=auth(admin)).json()
    entries = sorted(trail["items"], key=lambda entry: entry["at"])
    assert [(entry["action"], entry["actor_id"]) for entry in entries] == [
        ("item.updated", admin["id"]),
        ("item.moderated", admin["id"]),
    ]
    assert entries[0]["details"] == {"price_cents_from": item["price_cents"], "price_cents_to": 1}
    assert entries[1]["details"] == {"status_from": "active", "status_to": "archived", "reason": None}
