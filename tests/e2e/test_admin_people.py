"""The admin tools over HTTP on both engines: the people list, changing roles and statuses, and the audit
trail every admin write appends to."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

from tests.support.live_server import auth, register

from .helpers import assert_problem, create_admin, problem_type, trace_id_of

USERS = "/api/v1/admin/users"
AUDIT = "/api/v1/admin/audit"
ME = "/api/v1/me"


@pytest.fixture(scope="module")
def admin(live_server):
    """One admin per server for the module (making one costs a process and a password hash); tests that
    count an actor's audit entries make their own (`fresh_admin`)."""
    with live_server.client() as client:
        return create_admin(live_server, client)


@pytest.fixture
def fresh_admin(live_server, client):
    return create_admin(live_server, client)


# --- who may ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", USERS, None),
        ("PATCH", USERS + "/{target}", {"status": "disabled"}),
        ("GET", AUDIT, None),
        ("POST", "/api/v1/admin/test-monitoring", {"kind": "message"}),
    ],
)
def test_only_admins_reach_the_people_and_audit_tools(client, admin, method, path, body):
    target = register(client)
    url = path.format(target=target["id"])
    buyer, seller, other_seller = register(client), register(client, "seller"), register(client, "seller")

    assert_problem(client.request(method, url, json=body), 401, type_uri=problem_type("unauthenticated"))
    for someone in (buyer, seller, other_seller):
        r = client.request(method, url, json=body, headers=auth(someone))
        assert_problem(r, 403, type_uri=problem_type("forbidden"))
    assert client.get(ME, headers=auth(target)).status_code == 200  # nothing happened to the target
    assert client.request(method, url, json=body, headers=auth(admin)).status_code == 200


# --- people ----------------------------------------------------------------------------------------------


def test_the_people_list_filters_by_text_role_and_status_and_pages(client, admin):
    mark = uuid.uuid4().hex[:8]
    people = [
        client.post(
            "/api/v1/auth/register",
            json={
                "email": f"p{n}-{mark}@example.com",
                "password": "correct horse battery",
                "display_name": f"Person {n}",
                "role": role,
            },
        ).json()
        for n, role in enumerate(["buyer", "seller", "seller"])
    ]
    headers = auth(admin)

    every = client.get(USERS, params={"q": mark.upper()}, headers=headers).json()
    sellers = client.get(USERS, params={"q": mark, "role": "seller"}, headers=headers).json()

    assert [u["id"] for u in every["items"]] == [p["id"] for p in reversed(people)]  # newest first
    assert set(every["items"][0]) == {
        "id",
        "email",
        "display_name",
        "role",
        "status",
        "created_at",
        "last_login_at",
    }
    assert "password_hash" not in str(every)
    assert [u["id"] for u in sellers["items"]] == [people[2]["id"], people[1]["id"]]

    first = client.get(USERS, params={"q": mark, "limit": 2}, headers=headers).json()
    second = client.get(
        USERS, params={"q": mark, "limit": 2, "cursor": first["next_cursor"]}, headers=headers
    ).json()
    assert [u["id"] for u in first["items"] + second["items"]] == [p["id"] for p in reversed(people)]
    assert second["next_cursor"] is None
    # A cursor of one filter is refused by another.
    other = client.get(USERS, params={"q": "x", "cursor": first["next_cursor"]}, headers=headers)
    assert_problem(other, 400, type_uri=problem_type("invalid-cursor"))


def test_a_percent_sign_in_the_text_filter_is_taken_literally(client, admin):
    r = client.get(USERS, params={"q": "%"}, headers=auth(admin))
    assert r.status_code == 200
    assert all("%" in u["email"] + u["display_name"] for u in r.json()["items"])


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"rol": "seller"}, "rol"),
        ({"role": "king"}, "role"),
        ({"status": "gone"}, "status"),
        ({"limit": "101"}, "limit"),
        ({"q": "x" * 101}, "q"),
    ],
)
def test_an_unknown_filter_or_a_bad_value_is_a_400_naming_it(client, admin, params, field):
    r = client.get(USERS, params=params, headers=auth(admin))
    assert_problem(r, 400, type_uri=problem_type("invalid-parameter"), fields={field})


def test_disabling_a_user_ends_their_tokens_at_once_and_enabling_needs_a_new_sign_in(client, admin):
    target = register(client, "seller")

    r = client.patch(f"{USERS}/{target['id']}", json={"status": "disabled"}, headers=auth(admin))

    assert r.status_code == 200, r.text
    assert r.json()["status"] == "disabled"
    assert_problem(client.get(ME, headers=auth(target)), 401)
    signing_in = client.post(
        "/api/v1/auth/token", json={"email": target["email"], "password": target["password"]}
    )
    assert_problem(signing_in, 401, type_uri=problem_type("invalid-credentials"))

    enabled = client.patch(f"{USERS}/{target['id']}", json={"status": "active"}, headers=auth(admin))
    assert enabled.json()["status"] == "active"
    assert_problem(client.get(ME, headers=auth(target)), 401)  # the old token stays revoked
    again = client.post("/api/v1/auth/token", json={"email": target["email"], "password": target["password"]})
    assert again.status_code == 200


def test_a_new_role_applies_to_the_next_request(client, admin):
    target = register(client)
    assert client.post("/api/v1/items", json=_item(), headers=auth(target)).status_code == 403

    r = client.patch(f"{USERS}/{target['id']}", json={"role": "seller"}, headers=auth(admin))

    assert r.json()["role"] == "seller"
    assert client.post("/api/v1/items", json=_item(), headers=auth(target)).status_code == 201


def _item():
    return {"title": "Mug", "price_cents": 100, "currency": "EUR", "stock": 1, "category": "kitchen"}


@pytest.mark.parametrize("body", [{"status": "disabled"}, {"role": "seller"}])
def test_an_admin_cannot_disable_or_demote_themselves(client, admin, body):
    r = client.patch(f"{USERS}/{admin['id']}", json=body, headers=auth(admin))
    assert_problem(r, 409, type_uri=problem_type("self-lockout"))
    assert client.get(ME, headers=auth(admin)).json()["role"] == "admin"


def test_one_admin_may_remove_another(live_server, client, admin):
    other = create_admin(live_server, client)
    r = client.patch(f"{USERS}/{other['id']}", json={"role": "buyer"}, headers=auth(admin))
    assert r.status_code == 200
    assert_problem(client.get(USERS, headers=auth(other)), 403)


@pytest.mark.parametrize("user_id", [str(uuid.uuid4()), "not-an-id"])
def test_changing_an_unknown_user_is_404(client, admin, user_id):
    r = client.patch(f"{USERS}/{user_id}", json={"status": "disabled"}, headers=auth(admin))
    assert_problem(r, 404, type_uri=problem_type("not-found"))


@pytest.mark.parametrize(
    ("body", "fields"),
    [({"role": "king"}, {"role"}), ({"password": "x" * 12}, {"password"}), ({"status": 1}, {"status"})],
)
def test_a_bad_change_is_a_422_naming_the_field(client, admin, body, fields):
    target = register(client)
    r = client.patch(f"{USERS}/{target['id']}", json=body, headers=auth(admin))
    assert_problem(r, 422, type_uri=problem_type("validation-error"), fields=fields)


# --- audit -----------------------------------------------------------------------------------------------


def test_each_admin_write_appends_one_audit_entry_with_its_trace(client, admin):
    target = register(client)
    r = client.patch(
        f"{USERS}/{target['id']}", json={"role": "seller", "status": "disabled"}, headers=auth(admin)
    )
    assert r.status_code == 200

    trail = client.get(AUDIT, params={"target_id": target["id"]}, headers=auth(admin)).json()

    [entry] = trail["items"]
    assert entry["actor_id"] == admin["id"]
    assert (entry["action"], entry["target_type"], entry["target_id"]) == (
        "user.updated",
        "user",
        target["id"],
    )
    assert entry["details"] == {
        "role_from": "buyer",
        "role_to": "seller",
        "status_from": "active",
        "status_to": "disabled",
    }
    assert entry["trace_id"] == trace_id_of(r)
    assert target["password"] not in str(trail)


async def test_the_same_change_sent_twenty_times_at_once_is_made_and_audited_once(
    live_server, client, admin, fresh_admin
):
    # Each request read the account before any of them had written it: every one saw the change still to be
    # made, made it again and appended its entry ("active -> disabled" four times for one disabling).
    target = register(client)
    async with httpx.AsyncClient(base_url=live_server.base_url, timeout=60) as concurrent:
        responses = await asyncio.gather(
            *(
                concurrent.patch(
                    f"{USERS}/{target['id']}",
                    json={"status": "disabled"},
                    headers=auth(admin if n % 2 else fresh_admin),
                )
                for n in range(20)
            )
        )
    assert {r.status_code for r in responses} == {200}
    assert {r.json()["status"] for r in responses} == {"disabled"}
    trail = client.get(AUDIT, params={"target_id": target["id"]}, headers=auth(admin)).json()
    assert [e["details"] for e in trail["items"]] == [{"status_from": "active", "status_to": "disabled"}]


def test_a_refused_change_leaves_no_audit_entry(client, admin):
    r = client.patch(f"{USERS}/{admin['id']}", json={"status": "disabled"}, headers=auth(admin))
    assert r.status_code == 409
    trail = client.get(AUDIT, params={"target_id": admin["id"]}, headers=auth(admin)).json()
    assert trail["items"] == []


def test_the_monitoring_self_test_is_audited(client, fresh_admin):
    admin = fresh_admin
    r = client.post("/api/v1/admin/test-monitoring", json={"kind": "message"}, headers=auth(admin))
    assert r.status_code == 200
    trail = client.get(
        AUDIT, params={"actor_id": admin["id"], "action": "monitoring.tested"}, headers=auth(admin)
    ).json()
    assert [(e["target_id"], e["details"], e["trace_id"]) for e in trail["items"]] == [
        ("message", {"kind": "message"}, trace_id_of(r))
    ]


def test_the_audit_trail_filters_by_time_and_pages(client, fresh_admin):
    admin = fresh_admin
    for kind in ("message", "message", "message"):
        client.post("/api/v1/admin/test-monitoring", json={"kind": kind}, headers=auth(admin))
    mine = {"actor_id": admin["id"]}
    first = client.get(AUDIT, params={**mine, "limit": 2}, headers=auth(admin)).json()
    rest = client.get(AUDIT, params={**mine, "limit": 2, "cursor": first["next_cursor"]}, headers=auth(admin))
    entries = first["items"] + rest.json()["items"]
    assert len(entries) == 3 and rest.json()["next_cursor"] is None
    assert [e["at"] for e in entries] == sorted((e["at"] for e in entries), reverse=True)

    newest = entries[0]["at"]
    before = client.get(AUDIT, params={**mine, "to": newest}, headers=auth(admin)).json()
    after = client.get(AUDIT, params={**mine, "from": newest}, headers=auth(admin)).json()
    assert [e["id"] for e in before["items"]] == [e["id"] for e in entries[1:]]
    assert [e["id"] for e in after["items"]] == [entries[0]["id"]]
    future = client.get(AUDIT, params={**mine, "from": "2999-01-01"}, headers=auth(admin)).json()
    assert future["items"] == []


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"from": "yesterday"}, "from"),
        ({"to": "2026-01-01T00:00:00"}, "to"),
        ({"from": "2026-02-01", "to": "2026-01-01"}, "from"),
        ({"action": "user.deleted"}, "action"),
        ({"actr_id": "x"}, "actr_id"),
    ],
)
def test_a_bad_audit_filter_is_a_400_naming_it(client, admin, params, field):
    r = client.get(AUDIT, params=params, headers=auth(admin))
    assert_problem(r, 400, type_uri=problem_type("invalid-parameter"), fields={field})


def test_unknown_actor_or_target_ids_find_nothing(client: httpx.Client, admin):
    for params in ({"actor_id": "nobody"}, {"target_id": str(uuid.uuid4())}):
        r = client.get(AUDIT, params=params, headers=auth(admin))
        assert r.status_code == 200 and r.json() == {"items": [], "next_cursor": None}
