"""The admin dashboard over HTTP (no browser): sign-in, the session cookie, CSRF, periods, escaping, headers.

The session cookie is `Secure`, which httpx's cookie jar keeps away from http:// URLs, so these tests carry it
by hand in a `Cookie` header, as a browser on 127.0.0.1 does (the browser test proves that part)."""

from __future__ import annotations

import html
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import jwt
import pytest

from market.adapters.http.dashboard import COOKIE, csrf_token
from market.adapters.http.html import CSP
from tests.support.live_server import LiveServer, auth, register

from .helpers import HEX32, create_admin, trace_id_of

LOGIN = "/admin/login"
DASHBOARD = "/admin/dashboard"
MONITORING = "/admin/dashboard/test-monitoring"
BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
STYLESHEET = "/admin/static/dashboard.css"
# What a CSP without 'unsafe-inline' in style-src would block: a <style> element or a style attribute.
INLINE_STYLE = re.compile(r"<style[\s>]|\sstyle\s*=", re.IGNORECASE)


def sign_in(client: httpx.Client, email: str, password: str) -> httpx.Response:
    return client.post(LOGIN, data={"email": email, "password": password}, headers=BROWSER)


def session_of(response: httpx.Response) -> dict[str, str]:
    """The Cookie header a browser would send back after this sign-in response."""
    match = re.match(rf"{COOKIE}=([^;]*);", response.headers["set-cookie"])
    assert match and match.group(1), response.headers.get("set-cookie")
    return {**BROWSER, "Cookie": f"{COOKIE}={match.group(1)}"}


def token_of(session: dict[str, str]) -> str:
    return session["Cookie"].split("=", 1)[1]


@pytest.fixture(scope="module")
def admin(live_server: LiveServer) -> dict[str, str]:
    with live_server.client() as client:
        return create_admin(live_server, client)


@pytest.fixture(scope="module")
def admin_session(live_server: LiveServer, admin: dict[str, str]) -> dict[str, str]:
    with live_server.client() as client:
        r = sign_in(client, admin["email"], admin["password"])
    assert r.status_code == 303, r.text
    return session_of(r)


def assert_html_page(response: httpx.Response, status: int) -> str:
    """An HTML page that is never cached and may load nothing from elsewhere; returns its text."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("text/html"), response.headers
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["content-security-policy"] == CSP
    trace_id_of(response)  # traced like every other route
    return response.text


def test_dashboard_without_a_session_redirects_to_sign_in(client):
    r = client.get(DASHBOARD, headers=BROWSER)
    assert r.status_code == 303
    assert r.headers["location"] == LOGIN
    assert r.headers["cache-control"] == "no-store"
    assert client.post(MONITORING, data={"kind": "message"}).headers["location"] == LOGIN


def test_a_forged_or_expired_session_cookie_redirects_and_is_cleared(client, live_server, admin):
    secret = (
        live_server.env.get("MARKET_SECRET_KEY")
        or (Path(live_server.env["MARKET_VAR_DIR"]) / "secret_key").read_text().strip()
    )
    past = int(time.time()) - 60
    expired = jwt.encode(
        {"sub": admin["id"], "role": "admin", "iat": past - 3600, "exp": past, "aud": "market-api", "ver": 0},
        secret,
        algorithm="HS256",
    )
    forged = jwt.encode(
        {"sub": admin["id"], "exp": past + 7200, "aud": "market-api"},
        "not-the-signing-key-of-this-server-at-all",
    )
    for token in (expired, forged, "garbage"):
        r = client.get(DASHBOARD, headers={**BROWSER, "Cookie": f"{COOKIE}={token}"})
        assert r.status_code == 303, token
        assert r.headers["location"] == LOGIN
        assert r.headers["set-cookie"].startswith(f"{COOKIE}=;")
        assert "Max-Age=0" in r.headers["set-cookie"]


def test_sign_in_page_is_a_labelled_form(client):
    text = assert_html_page(client.get(LOGIN, headers=BROWSER), 200)
    assert '<label for="email">' in text and 'id="email"' in text
    assert '<label for="password">' in text and 'type="password"' in text
    assert '<form method="post" action="/admin/login">' in text
    assert "<script" not in text and "http://" not in text and "https://" not in text


def test_wrong_password_and_unknown_email_give_the_same_401_page(client, admin):
    wrong = sign_in(client, admin["email"], "not-the-password")
    unknown = sign_in(client, "nobody-at-all@example.com", "not-the-password")
    for r in (wrong, unknown):
        text = assert_html_page(r, 401)
        assert "set-cookie" not in r.headers
        assert "Wrong e-mail or password." in text
    assert wrong.text.replace(admin["email"], "") == unknown.text.replace("nobody-at-all@example.com", "")


def test_incomplete_or_oversized_sign_in_is_refused_without_a_500(client, admin):
    assert "set-cookie" not in assert_html_page(client.post(LOGIN, data={"email": admin["email"]}), 400)
    assert_html_page(sign_in(client, admin["email"], "x" * 10_000), 401)
    assert_html_page(sign_in(client, "nul\x00@example.com", "whatever-password"), 401)


def test_a_buyer_may_not_sign_in_nor_use_a_token_as_the_cookie(client):
    buyer = register(client, "buyer")
    r = sign_in(client, buyer["email"], buyer["password"])
    assert "administrators only" in assert_html_page(r, 403)
    assert "set-cookie" not in r.headers
    token = buyer["Authorization"].removeprefix("Bearer ")
    r = client.get(DASHBOARD, headers={**BROWSER, "Cookie": f"{COOKIE}={token}"})
    assert "administrators only" in assert_html_page(r, 403)
    r = client.post(
        MONITORING,
        data={"kind": "message", "csrf_token": csrf_token(token)},
        headers={"Cookie": f"{COOKIE}={token}"},
    )
    assert_html_page(r, 403)


def test_admin_sign_in_sets_a_strict_http_only_session_cookie(client, admin):
    r = sign_in(client, admin["email"], admin["password"])
    assert r.status_code == 303
    assert r.headers["location"] == DASHBOARD
    assert r.headers["cache-control"] == "no-store"
    name_value, *attributes = [part.strip() for part in r.headers["set-cookie"].split(";")]
    assert name_value.startswith(f"{COOKIE}=")
    assert {"HttpOnly", "Secure", "SameSite=Strict", "Path=/admin"} <= set(attributes)
    expires_in = client.post(
        "/api/v1/auth/token", json={"email": admin["email"], "password": admin["password"]}
    ).json()["expires_in"]
    assert f"Max-Age={expires_in}" in attributes
    # The cookie is an access token of this very admin.
    me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {name_value.split('=', 1)[1]}"})
    assert me.json()["id"] == admin["id"]


def test_signed_in_admin_sees_every_part_of_the_dashboard(client, admin, admin_session):
    text = assert_html_page(client.get(DASHBOARD, headers=admin_session), 200)
    assert html.escape(admin["email"]) in text
    for testid in (
        "funnel-browsed",
        "funnel-carted",
        "funnel-checkout_started",
        "funnel-paid",
        "funnel-overall-conversion",
        "payments-attempts",
        "payments-success-rate",
        "no-result-queries",
        "carts-with-items",
        "sessions-sessions",
        "alerts",
        "monitoring-message",
        "monitoring-error",
        "monitoring-slow",
        "monitoring-payment_failure",
    ):
        assert f'data-testid="{testid}"' in text, testid
    assert "<script" not in text
    assert (
        text.count(f'name="csrf_token" value="{csrf_token(token_of(admin_session))}"') == 5
    )  # 4 kinds + sign-out


def test_the_dashboard_shows_the_funnel_report_of_its_period(client, admin, admin_session):
    period = {"from": "2026-01-01T00:00:00Z", "to": "2026-01-31T00:00:00Z"}
    funnel = client.get("/api/v1/admin/analytics/funnel", params=period, headers=auth(admin)).json()
    text = assert_html_page(client.get(DASHBOARD, params=period, headers=admin_session), 200)
    for step in funnel["steps"]:
        cell = re.search(rf'data-testid="funnel-{step["name"]}">([^<]*)<', text)
        assert cell and cell.group(1).replace("\u202f", "") == str(step["sessions"]), step
    assert 'value="2026-01-01"' in text and 'value="2026-01-31"' in text


@pytest.mark.parametrize(
    "query",
    [
        {"from": "yesterday"},
        {"to": "2026-13-45"},
        {"from": "2026-02-01", "to": "2026-01-01"},
        {"from": "2020-01-01", "to": "2026-01-01"},
        {"from": "2026-01-01T00:00:00"},  # no time zone
        {"from": "x" * 5000},
        {"from": "0001-01-01T00:00:00+01:00"},  # before datetime.min in UTC
        {"to": "0001-01-05"},
        {"from": "9999-12-31", "to": "9999-12-31"},  # the end of that day is past what a report can add to
    ],
)
def test_a_bad_period_is_a_400_page_that_says_why(client, admin_session, query):
    text = assert_html_page(client.get(DASHBOARD, params=query, headers=admin_session), 400)
    assert 'data-testid="period-error"' in text
    assert 'data-testid="funnel-browsed"' not in text


def test_a_no_result_search_query_is_shown_escaped(client, admin_session):
    since = (datetime.now(UTC) - timedelta(seconds=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    query = "<script>alert('owned')</script><img/src=x/onerror=alert(1)> \"quoted\"&amp;zqxjvbnm"
    for _ in range(2):
        r = client.get("/api/v1/items", params={"q": query})
        assert r.status_code == 200 and r.json()["items"] == []
    text = assert_html_page(client.get(DASHBOARD, params={"from": since}, headers=admin_session), 200)
    # Whichever spelling the escaping uses (&quot; or &#34;), the cell reads back as the query typed.
    cells = [html.unescape(cell) for cell in re.findall(r'<td class="q">([^<]*)</td>', text)]
    assert query.lower() in cells
    assert "<script>alert" not in text and "<img/src=x" not in text and '"quoted"' not in text


def test_monitoring_buttons_refuse_a_missing_or_foreign_csrf_token(client, admin_session):
    someone_else = register(client, "buyer")["Authorization"].removeprefix("Bearer ")
    declined_before = _declined(client)
    for fields in (
        {"kind": "payment_failure"},
        {"kind": "payment_failure", "csrf_token": ""},
        {"kind": "payment_failure", "csrf_token": "0" * 64},
        {"kind": "payment_failure", "csrf_token": csrf_token(someone_else)},  # another session's token
    ):
        r = client.post(MONITORING, data=fields, headers=admin_session)
        assert "nothing was done" in assert_html_page(r, 403)
    assert _declined(client) == declined_before
    good = {"kind": "payment_failure", "csrf_token": csrf_token(token_of(admin_session))}
    text = assert_html_page(client.post(MONITORING, data=good, headers=admin_session), 200)
    assert 'data-testid="monitoring-result"' in text
    assert _declined(client) == declined_before + 1


def _declined(client: httpx.Client) -> float:
    """Declined payment attempts so far, from the metrics."""
    text = client.get("/metrics").text
    match = re.search(
        r'^market_payment_attempts_total\{[^}]*market_payment_outcome="declined"[^}]*\} (\S+)$', text, re.M
    )
    return float(match.group(1)) if match else 0.0


def _result_trace_id(text: str) -> str:
    match = re.search(r'data-testid="monitoring-trace-id">([^<]*)<', text)
    assert match, text
    return match.group(1)


def test_message_button_shows_the_trace_id_of_its_request(client, admin_session):
    fields = {"kind": "message", "csrf_token": csrf_token(token_of(admin_session))}
    r = client.post(MONITORING, data=fields, headers=admin_session)
    text = assert_html_page(r, 200)
    assert 'data-kind="message"' in text
    assert HEX32.match(_result_trace_id(text))
    assert _result_trace_id(text) == trace_id_of(r)
    assert 'data-testid="funnel-browsed"' in text  # the whole dashboard, not a bare result


def test_error_button_reports_an_unhandled_error_as_the_api_does(client, admin_session):
    fields = {"kind": "error", "csrf_token": csrf_token(token_of(admin_session)), "from": "2026-01-01"}
    r = client.post(MONITORING, data=fields, headers=admin_session)
    text = assert_html_page(r, 500)  # a 5xx for the error-rate metric, and the page for the person
    assert 'data-kind="error"' in text
    assert _result_trace_id(text) == trace_id_of(r)
    assert 'value="2026-01-01"' in text  # the period the button was pressed on


def test_an_unknown_monitoring_kind_is_a_400_and_produces_nothing(client, admin_session):
    fields = {"kind": "<b>boom</b>", "csrf_token": csrf_token(token_of(admin_session))}
    text = assert_html_page(client.post(MONITORING, data=fields, headers=admin_session), 400)
    assert "Nothing was produced" in text and "<b>boom</b>" not in text


def test_a_button_that_did_its_work_answers_200_even_with_a_bad_period_carried_along(client, admin_session):
    """The period fields only ride along with the button: the signal was produced, so the answer says so (the
    bad period is shown on the page, as when viewing it)."""
    declined_before = _declined(client)
    fields = {
        "kind": "payment_failure",
        "from": "notadate",
        "csrf_token": csrf_token(token_of(admin_session)),
    }
    text = assert_html_page(client.post(MONITORING, data=fields, headers=admin_session), 200)
    assert 'data-testid="monitoring-result"' in text
    assert _declined(client) == declined_before + 1


def test_sign_out_clears_the_cookie_and_revokes_the_session_token(client, live_server):
    # An admin of its own: signing out revokes every token of that admin, the module's shared one included.
    admin = create_admin(live_server, client)
    session = session_of(sign_in(client, admin["email"], admin["password"]))
    assert client.get(DASHBOARD, headers=session).status_code == 200

    r = client.post("/admin/logout", data={"csrf_token": csrf_token(token_of(session))}, headers=session)

    assert r.status_code == 303
    assert r.headers["location"] == LOGIN
    assert r.headers["set-cookie"].startswith(f"{COOKIE}=;")
    assert "Max-Age=0" in r.headers["set-cookie"]
    # A copy of the cookie (another tab, a stolen one) no longer opens the dashboard, nor the API.
    replayed = client.get(DASHBOARD, headers=session)
    assert replayed.status_code == 303 and replayed.headers["location"] == LOGIN
    api = client.get("/api/v1/me", headers={"Authorization": f"Bearer {token_of(session)}"})
    assert api.status_code == 401
    assert client.get("/api/v1/me", headers=auth(admin)).status_code == 401


def test_dashboard_pages_are_not_in_the_openapi_schema(client):
    paths = client.get("/schema/openapi.json").json()["paths"]
    assert not [path for path in paths if path.startswith("/admin")]


def test_the_stylesheet_is_served_as_css_under_the_pages_security_headers(client):
    r = client.get(STYLESHEET, headers=BROWSER)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/css")
    assert r.headers["content-security-policy"] == CSP
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "font:" in r.text and "<" not in r.text


@pytest.mark.parametrize("path", ["/admin/static/nothing.css", "/admin/static/%2e%2e/dashboard.py"])
def test_an_unknown_or_escaping_static_path_is_a_404(client, path):
    r = client.get(path)
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/problem+json")


def test_pages_link_the_stylesheet_and_carry_no_inline_style(client, admin_session):
    buyer = register(client, "buyer")
    pages = [
        client.get(LOGIN, headers=BROWSER),
        sign_in(client, "nobody-at-all@example.com", "not-the-password"),  # 401 with a message
        sign_in(client, buyer["email"], buyer["password"]),  # 403 message page
        client.get(DASHBOARD, headers=admin_session),
        client.get(DASHBOARD, params={"from": "yesterday"}, headers=admin_session),  # 400 period error
        client.get("/no/such/page", headers=BROWSER),  # the friendly 404
    ]
    for r in pages:
        assert r.headers["content-type"].startswith("text/html"), r.request.url
        assert f'<link rel="stylesheet" href="{STYLESHEET}">' in r.text, r.request.url
        assert INLINE_STYLE.search(r.text) is None, (r.request.url, INLINE_STYLE.search(r.text))
        csp = r.headers.get("content-security-policy")
        assert csp is None or "'unsafe-inline'" not in csp  # the 404 page is not the dashboard's
    assert "style-src 'self';" in pages[0].headers["content-security-policy"]
