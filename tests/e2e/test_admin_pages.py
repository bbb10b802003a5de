"""The admin tool pages over HTTP on both engines (users, orders, moderation, audit; deliveries are in
test_seller_pages.py, which needs a server that sends webhooks): who may see them, CSRF on every form, the
forms calling the API's use cases (audit trail, 409 rules), filters, paging and escaping."""

from __future__ import annotations

import html
import re
import uuid
from urllib.parse import quote

import pytest

from tests.support.live_server import auth, register

from .helpers import assert_problem, create_admin, create_item
from .pages import (
    BROWSER,
    LOGIN,
    admin_session,
    assert_html_page,
    cookie_of_token,
    csrf_of,
    page_error,
    page_notice,
    rows,
    seller_session,
    sign_in,
    texts_of,
)

ADMIN_ITEMS = "/api/v1/admin/items"
AUDIT = "/api/v1/admin/audit"
PAGES = ["/admin/users", "/admin/orders", "/admin/deliveries", "/admin/items", "/admin/audit"]
FORMS = [
    "/admin/users/{id}",
    "/admin/deliveries/{id}/retry",
    "/admin/items/{id}/status",
]
MARKUP = "<script>alert('owned')</script><img src=x onerror=alert(1)> \"q\"&amp;"


@pytest.fixture(scope="module")
def admin(live_server):
    with live_server.client() as client:
        return create_admin(live_server, client)


@pytest.fixture(scope="module")
def session(live_server, admin):
    with live_server.client() as client:
        return admin_session(client, admin)


def _order(client, seller, buyer, token="tok_visa"):
    item = create_item(client, seller, stock=5, price_cents=1250)
    assert (
        client.put(f"/api/v1/cart/items/{item['id']}", json={"quantity": 2}, headers=auth(buyer)).status_code
        == 200
    )
    r = client.post(
        "/api/v1/checkout",
        json={"payment_method": {"type": "card", "token": token}},
        headers={**auth(buyer), "Idempotency-Key": uuid.uuid4().hex},
    )
    assert r.status_code in (201, 402), r.text
    return client.get("/api/v1/orders", params={"limit": 1}, headers=auth(buyer)).json()["items"][0]


# --- who may -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [*PAGES, "/admin/orders/{id}"])
def test_every_admin_page_is_for_admins_only(client, session, path):
    url = path.format(id=uuid.uuid4())
    buyer, seller = register(client), register(client, "seller")

    anonymous = client.get(url, headers={"Accept": "text/html"})
    assert anonymous.status_code == 303 and anonymous.headers["location"] == LOGIN
    for someone in (buyer, seller):  # their own tokens planted as the admin cookie
        assert "administrators only" in assert_html_page(
            client.get(url, headers=cookie_of_token(someone["Authorization"])), 403
        )
    # A seller signed in through the form has the seller area's cookie, which is not the admin pages' key.
    seller_cookie = seller_session(client, seller)
    r = client.get(url, headers=seller_cookie)
    assert r.status_code == 303 and r.headers["location"] == LOGIN
    expected = 404 if "{id}" in path else 200
    assert_html_page(client.get(url, headers=session), expected)


@pytest.mark.parametrize("path", FORMS)
def test_every_admin_form_is_for_admins_only_and_needs_its_csrf_token(client, session, path):
    target = register(client, "seller")
    url = path.format(id=target["id"])
    fields = {"new_role": "buyer", "new_status": "disabled", "reason": "r"}
    seller = register(client, "seller")

    anonymous = client.post(url, data=fields)
    assert anonymous.status_code == 303 and anonymous.headers["location"] == LOGIN
    planted = cookie_of_token(seller["Authorization"])
    r = client.post(url, data={**fields, "csrf_token": csrf_of(planted)}, headers=planted)
    assert_html_page(r, 403)
    someone_else = cookie_of_token(register(client)["Authorization"])
    for token in (None, "", "0" * 64, csrf_of(someone_else)):
        data = fields if token is None else {**fields, "csrf_token": token}
        assert "nothing was done" in assert_html_page(client.post(url, data=data, headers=session), 403)
    # Nothing happened to the target.
    assert client.get("/api/v1/me", headers=auth(target)).json()["role"] == "seller"


def _sign_out_form_token(text: str, action: str = "/admin/logout") -> str:
    """The CSRF token the page's sign-out form sends (the form must be there and carry one)."""
    match = re.search(
        rf'<form method="post" action="{action}"><input type="hidden" name="csrf_token" value="([^"]*)"', text
    )
    assert match, text
    return match.group(1)


def test_signing_out_needs_the_sessions_csrf_token_and_every_sign_out_button_sends_it(client, live_server):
    admin = create_admin(live_server, client)  # of its own: signing out revokes every token of that admin
    session = admin_session(client, admin)
    someone_else = admin_session(client, create_admin(live_server, client))

    for token in (None, "", "0" * 64, csrf_of(someone_else)):
        data = {} if token is None else {"csrf_token": token}
        refused = assert_html_page(client.post("/admin/logout", data=data, headers=session), 403)
        assert "nothing was done" in refused
        # Not signed out: the page and the API still take this session's token.
        assert client.get("/admin/users", headers=session).status_code == 200
        assert client.get("/api/v1/me", headers=auth(admin)).status_code == 200
    # The refused page's own button, like every page's, signs out with the session's token.
    assert _sign_out_form_token(refused) == csrf_of(session)
    assert _sign_out_form_token(
        assert_html_page(client.get("/admin/users", headers=session), 200)
    ) == csrf_of(session)

    r = client.post("/admin/logout", data={"csrf_token": csrf_of(session)}, headers=session)

    assert r.status_code == 303 and r.headers["location"] == LOGIN
    assert client.get("/api/v1/me", headers=auth(admin)).status_code == 401
    # Without a live session there is nothing to protect: the cookie is cleared, the token is not needed.
    again = client.post("/admin/logout", headers=session)
    assert again.status_code == 303 and again.headers["location"] == LOGIN


def test_a_non_admins_refusal_page_signs_out_with_the_sessions_csrf_token(client):
    buyer = register(client)
    planted = cookie_of_token(buyer["Authorization"])
    refused = assert_html_page(client.get("/admin/users", headers=planted), 403)
    assert _sign_out_form_token(refused) == csrf_of(planted)
    assert client.post("/admin/logout", headers=planted).status_code == 403
    assert client.get("/api/v1/me", headers=auth(buyer)).status_code == 200
    r = client.post("/admin/logout", data={"csrf_token": csrf_of(planted)}, headers=planted)
    assert r.status_code == 303 and r.headers["location"] == LOGIN
    assert client.get("/api/v1/me", headers=auth(buyer)).status_code == 401


def test_a_seller_and_a_buyer_signing_in_get_their_own_place(client):
    seller, buyer = register(client, "seller"), register(client)
    r = sign_in(client, seller["email"], seller["password"])
    assert r.status_code == 303 and r.headers["location"] == "/seller/dashboard"
    name_value, *attributes = [part.strip() for part in r.headers["set-cookie"].split(";")]
    assert name_value.startswith("market_seller=")
    assert {"HttpOnly", "Secure", "SameSite=Strict", "Path=/seller"} <= set(attributes)
    r = sign_in(client, buyer["email"], buyer["password"])
    assert "administrators only" in assert_html_page(r, 403)
    assert "set-cookie" not in r.headers


def test_the_navigation_links_every_tool_page(client, session):
    text = assert_html_page(client.get("/admin/dashboard", headers=session), 200)
    for path in PAGES:
        assert f'<a href="{path}">' in text, path
    text = assert_html_page(client.get("/admin/users", headers=session), 200)
    for path in ["/admin/dashboard", *PAGES]:
        assert f'<a href="{path}">' in text, path


# --- users -------------------------------------------------------------------------------------------------


def test_users_are_listed_by_filter_and_escaped(client, session):
    mark = uuid.uuid4().hex[:8]
    made = []
    for role in ("buyer", "seller"):
        r = client.post(
            "/api/v1/auth/register",
            json={
                "email": f"{role}-{mark}@example.com",
                "password": "correct horse battery",
                "display_name": f"{MARKUP} {mark}",
                "role": role,
            },
        )
        assert r.status_code == 201, r.text
        made.append(r.json()["id"])

    text = assert_html_page(client.get("/admin/users", params={"q": mark.upper()}, headers=session), 200)
    assert rows(text, "user-row", "data-user-id") == list(reversed(made))
    assert "<script>alert" not in text and "<img src=x" not in text
    assert html.escape(f"{MARKUP} {mark}", quote=False) in text.replace("&#39;", "'").replace("&#34;", '"')
    sellers = assert_html_page(
        client.get("/admin/users", params={"q": mark, "role": "seller"}, headers=session), 200
    )
    assert rows(sellers, "user-row", "data-user-id") == [made[1]]
    disabled = assert_html_page(
        client.get("/admin/users", params={"q": mark, "status": "disabled"}, headers=session), 200
    )
    assert rows(disabled, "user-row", "data-user-id") == []
    assert 'data-testid="none"' in disabled


@pytest.mark.parametrize("params", [{"role": "king"}, {"status": "<b>gone</b>"}, {"cursor": "not-a-cursor"}])
def test_a_bad_user_filter_is_a_400_page_naming_it(client, session, params):
    text = assert_html_page(client.get("/admin/users", params=params, headers=session), 400)
    assert 'data-testid="filter-error"' in text and 'data-testid="user-row"' not in text
    assert f"<strong>{next(iter(params))}</strong>" in text
    assert "<b>gone</b>" not in text


def test_an_admin_changes_a_role_and_status_from_the_page_and_it_is_audited(client, admin, session):
    target = register(client, "buyer")
    r = client.post(
        f"/admin/users/{target['id']}",
        data={
            "csrf_token": csrf_of(session),
            "new_role": "seller",
            "new_status": "disabled",
            "q": target["email"],
        },
        headers=session,
    )
    text = assert_html_page(r, 200)
    assert page_notice(text) == f"{target['email']} is now seller, disabled."
    assert rows(text, "user-row", "data-user-id") == [target["id"]]  # the list it was posted from
    assert client.get("/api/v1/me", headers=auth(target)).status_code == 401  # disabling ends the tokens
    trail = client.get(AUDIT, params={"target_id": target["id"]}, headers=auth(admin)).json()["items"]
    assert [(e["action"], e["actor_id"], e["details"]) for e in trail] == [
        (
            "user.updated",
            admin["id"],
            {"role_from": "buyer", "role_to": "seller", "status_from": "active", "status_to": "disabled"},
        )
    ]


def test_an_admin_demoting_themselves_sees_the_409_detail_and_nothing_changes(client, live_server):
    admin = create_admin(live_server, client)
    session = admin_session(client, admin)
    r = client.post(
        f"/admin/users/{admin['id']}",
        data={"csrf_token": csrf_of(session), "new_role": "buyer", "new_status": "active"},
        headers=session,
    )
    assert (
        page_error(assert_html_page(r, 409))
        == "You cannot disable or demote your own account; ask another admin."
    )
    assert client.get("/api/v1/me", headers=auth(admin)).json()["role"] == "admin"
    bad = client.post(
        f"/admin/users/{admin['id']}",
        data={"csrf_token": csrf_of(session), "new_role": "emperor"},
        headers=session,
    )
    assert "role" in page_error(assert_html_page(bad, 400))
    missing = client.post(
        f"/admin/users/{uuid.uuid4()}",
        data={"csrf_token": csrf_of(session), "new_role": "buyer"},
        headers=session,
    )
    assert page_error(assert_html_page(missing, 404)) == "No such user."


# --- orders ------------------------------------------------------------------------------------------------


def test_orders_are_listed_by_filter_and_an_order_has_its_page(client, session):
    seller, buyer = register(client, "seller"), register(client)
    paid = _order(client, seller, buyer)
    failed = _order(client, seller, buyer, "tok_chargeDeclined")

    text = assert_html_page(
        client.get("/admin/orders", params={"buyer_id": buyer["id"]}, headers=session), 200
    )
    assert texts_of(text, "order-link") == [failed["id"], paid["id"]]
    only_paid = client.get(
        "/admin/orders", params={"buyer_id": buyer["id"], "status": "paid"}, headers=session
    )
    assert texts_of(assert_html_page(only_paid, 200), "order-link") == [paid["id"]]
    by_seller = client.get(
        "/admin/orders", params={"seller_id": seller["id"], "to": "2000-01-01"}, headers=session
    )
    assert texts_of(assert_html_page(by_seller, 200), "order-link") == []

    page = assert_html_page(client.get(f"/admin/orders/{paid['id']}", headers=session), 200)
    assert texts_of(page, "order-id") == [paid["id"]]
    assert texts_of(page, "order-status") == ["paid"]
    assert texts_of(page, "order-total") == ["2\u202f500 EUR"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "lost"}, "status"),
        ({"buyer_id": "nobody"}, "buyer_id"),
        ({"seller_id": "x" * 5000}, "seller_id"),
        ({"from": "yesterday"}, "from"),
        ({"from": "2026-02-01", "to": "2026-01-01"}, "from"),
    ],
)
def test_a_bad_order_filter_is_a_400_page_naming_it(client, session, params, field):
    text = assert_html_page(client.get("/admin/orders", params=params, headers=session), 400)
    assert f"<strong>{field}</strong>" in text, text


def test_an_unknown_order_is_a_404_page(client, session):
    assert "no such order" in assert_html_page(client.get("/admin/orders/<b>x", headers=session), 404).lower()


# --- moderation and the audit trail ------------------------------------------------------------------------


def test_an_admin_suspends_and_restores_an_item_from_the_page_with_a_reason(client, admin, session):
    seller = register(client, "seller")
    item = create_item(client, seller, title=f"Mug {MARKUP}")
    listed = assert_html_page(
        client.get("/admin/items", params={"seller_id": seller["id"]}, headers=session), 200
    )
    assert rows(listed, "item-row", "data-item-id") == [item["id"]]
    assert "<script>alert" not in listed

    fields = {
        "csrf_token": csrf_of(session),
        "new_status": "suspended",
        "reason": f"fake {MARKUP}",
        "seller_id": seller["id"],
    }
    text = assert_html_page(
        client.post(f"/admin/items/{item['id']}/status", data=fields, headers=session), 200
    )

    assert page_notice(text) == f"Mug {MARKUP} is now suspended."
    assert rows(text, "item-row", "data-item-id") == []  # the active list it was posted from
    assert client.get(f"/api/v1/items/{item['id']}").status_code == 404
    suspended = client.get(
        "/admin/items", params={"status": "suspended", "seller_id": seller["id"]}, headers=session
    )
    assert rows(assert_html_page(suspended, 200), "item-row", "data-item-id") == [item["id"]]
    # The seller cannot bring it back; the admin can.
    assert (
        client.patch(
            f"/api/v1/items/{item['id']}", json={"status": "active"}, headers=auth(seller)
        ).status_code
        == 403
    )
    fields |= {"new_status": "active", "reason": "appeal granted"}
    assert_html_page(client.post(f"/admin/items/{item['id']}/status", data=fields, headers=session), 200)
    assert client.get(f"/api/v1/items/{item['id']}").status_code == 200

    trail = assert_html_page(
        client.get("/admin/audit", params={"target_id": item["id"]}, headers=session), 200
    )
    assert trail.count('data-testid="audit-row"') == 2
    assert "item.moderated" in trail and "reason=appeal granted" in trail
    assert "<script>alert" not in trail
    by_action = client.get(
        "/admin/audit",
        params={"actor_id": admin["id"], "action": "item.moderated", "target_id": item["id"]},
        headers=session,
    )
    assert assert_html_page(by_action, 200).count('data-testid="audit-row"') == 2


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"new_status": "suspended", "reason": "   "}, "Give a reason"),
        ({"new_status": "deleted", "reason": "spam"}, "The status must be one of"),
    ],
)
def test_a_moderation_form_without_a_reason_or_with_a_bad_status_changes_nothing(
    client, session, fields, message
):
    item = create_item(client, register(client, "seller"))
    r = client.post(
        f"/admin/items/{item['id']}/status", data={**fields, "csrf_token": csrf_of(session)}, headers=session
    )
    assert page_error(assert_html_page(r, 400)).startswith(message)
    assert client.get(f"/api/v1/items/{item['id']}").status_code == 200


def test_the_audit_trail_pages_through_every_entry(client, admin, session):
    item = create_item(client, register(client, "seller"))
    for n in range(27):
        status = "archived" if n % 2 == 0 else "active"
        r = client.patch(
            f"{ADMIN_ITEMS}/{item['id']}", json={"status": status, "reason": f"r{n}"}, headers=auth(admin)
        )
        assert r.status_code == 200, r.text
    first = assert_html_page(
        client.get("/admin/audit", params={"target_id": item["id"]}, headers=session), 200
    )
    assert first.count('data-testid="audit-row"') == 25
    (next_url,) = [html.unescape(u) for u in re.findall(r'data-testid="next-page" href="([^"]*)"', first)]
    assert next_url.startswith("/admin/audit?target_id=")
    second = assert_html_page(client.get(next_url, headers=session), 200)
    assert second.count('data-testid="audit-row"') == 2
    assert 'data-testid="next-page"' not in second
    assert "reason=r0" in second and "reason=r26" in first


@pytest.mark.parametrize(
    ("params", "field"),
    [({"action": "user.deleted"}, "action"), ({"from": "soon"}, "from"), ({"to": "2026-99-01"}, "to")],
)
def test_a_bad_audit_filter_is_a_400_page_naming_it(client, session, params, field):
    text = assert_html_page(client.get("/admin/audit", params=params, headers=session), 400)
    assert f"<strong>{field}</strong>" in text


HOSTILE = ["\x00", "%00", "'; DROP TABLE users; --", "\u202e" * 10, "x" * 5000, "../../etc/passwd"]


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_filters_and_ids_are_never_a_500(client, session, value):
    for path, names in (
        ("/admin/users", ("q", "role", "status", "cursor")),
        ("/admin/orders", ("status", "buyer_id", "seller_id", "from", "to", "cursor")),
        ("/admin/deliveries", ("seller_id", "status", "cursor")),
        ("/admin/items", ("status", "q", "seller_id", "cursor")),
        ("/admin/audit", ("actor_id", "action", "target_id", "from", "to", "cursor")),
        ("/admin/sessions", ("trace_id", "order_id", "email", "user_id", "cursor")),
        ("/admin/dashboard", ("from", "to")),
        ("/seller/deliveries", ("cursor",)),
    ):
        for name in names:
            r = client.get(path, params={name: value}, headers=session)
            assert r.status_code in (200, 303, 400), (path, name, r.status_code, r.text[:300])
    csrf = csrf_of(session)
    for path in ("/admin/users/{}", "/admin/deliveries/{}/retry", "/admin/items/{}/status"):
        url = path.format(quote(value, safe=""))
        fields = {"csrf_token": csrf, "new_role": value, "new_status": "active", "reason": value}
        r = client.post(url, data=fields, headers=session)
        assert r.status_code in (400, 404, 409), (url, r.status_code, r.text[:300])
    for path in ("/admin/orders/{}", "/admin/sessions/{}"):
        r = client.get(path.format(quote(value, safe="")), headers=session)
        assert r.status_code in (400, 404), (path, r.status_code, r.text[:300])


@pytest.mark.parametrize(
    ("path", "sign_in_at"),
    [
        ("/admin/logout", "/admin/login"),
        ("/admin/dashboard/test-monitoring", "/admin/login"),
        ("/seller/logout", "/seller/login"),
    ],
)
def test_a_browser_in_the_peoples_areas_gets_its_errors_as_pages(client, path, sign_in_at):
    """A GET of a form's address (a 405) is a page for a browser, with the pages' headers and a way back in;
    an API client still gets the problem JSON."""
    text = assert_html_page(client.get(path, headers=BROWSER), 405)
    assert f'href="{sign_in_at}"' in text
    assert_problem(client.get(path, headers={"Accept": "application/json"}), 405)


def test_the_browsers_404_page_has_the_pages_headers(client):
    text = assert_html_page(client.get("/admin/DASHBOARD", headers=BROWSER), 404)
    assert "Page not found" in text
