"""What the tests of the admin tool pages and the seller area share: signing in through the form, carrying
the session cookie by hand (it is `Secure`, which httpx keeps away from http://), the CSRF token of a session,
and the checks every page must pass."""

from __future__ import annotations

import html
import re

import httpx

from market.adapters.http.dashboard import COOKIE, SELLER_COOKIE, csrf_token
from market.adapters.http.html import CSP

from .helpers import trace_id_of

LOGIN = "/admin/login"
BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
INLINE_STYLE = re.compile(r"<style[\s>]|\sstyle\s*=", re.IGNORECASE)


def sign_in(client: httpx.Client, email: str, password: str) -> httpx.Response:
    return client.post(LOGIN, data={"email": email, "password": password}, headers=BROWSER)


def session_of(response: httpx.Response, cookie: str = COOKIE) -> dict[str, str]:
    """The headers a browser would send back (to the cookie's path) after this sign-in response."""
    match = re.match(rf"{cookie}=([^;]*);", response.headers.get("set-cookie", ""))
    assert match and match.group(1), response.headers.get("set-cookie")
    return {**BROWSER, "Cookie": f"{cookie}={match.group(1)}"}


def cookie_of_token(token_header: str, cookie: str = COOKIE) -> dict[str, str]:
    """An API bearer token planted as a page cookie (what a buyer or seller could do with their own)."""
    return {**BROWSER, "Cookie": f"{cookie}={token_header.removeprefix('Bearer ')}"}


def admin_session(client: httpx.Client, admin: dict[str, str]) -> dict[str, str]:
    r = sign_in(client, admin["email"], admin["password"])
    assert r.status_code == 303 and r.headers["location"] == "/admin/dashboard", r.text
    return session_of(r)


def seller_session(client: httpx.Client, seller: dict[str, str]) -> dict[str, str]:
    r = sign_in(client, seller["email"], seller["password"])
    assert r.status_code == 303 and r.headers["location"] == "/seller/dashboard", r.text
    return session_of(r, SELLER_COOKIE)


def csrf_of(session: dict[str, str]) -> str:
    return csrf_token(session["Cookie"].split("=", 1)[1])


def assert_html_page(response: httpx.Response, status: int) -> str:
    """A page that is never cached, loads nothing from elsewhere and has no inline style or script."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("text/html"), response.headers
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["content-security-policy"] == CSP
    assert response.headers["x-frame-options"] == "DENY"
    trace_id_of(response)
    text = response.text
    assert "<script" not in text.lower()
    assert INLINE_STYLE.search(text) is None
    return text


def texts_of(text: str, testid: str) -> list[str]:
    """The unescaped text of every element with this data-testid whose content is plain text."""
    return [html.unescape(t) for t in re.findall(rf'data-testid="{testid}"[^>]*>([^<]*)<', text)]


def rows(text: str, testid: str, attribute: str) -> list[str]:
    """The `attribute` of every row with this data-testid, in page order."""
    return re.findall(rf'data-testid="{testid}" {attribute}="([^"]*)"', text)


def page_error(text: str) -> str:
    match = re.search(r'data-testid="page-error"><p>([^<]*)</p>', text)
    assert match, text
    return html.unescape(match.group(1))


def page_notice(text: str) -> str:
    match = re.search(r'data-testid="page-notice"><p>([^<]*)</p>', text)
    assert match, text
    return html.unescape(match.group(1))
