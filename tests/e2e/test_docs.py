"""The interactive documentation loads nothing from outside: Swagger UI's files are served by the service itself,
under a Content-Security-Policy that allows only its own scripts (no inline ones), and it still works in a real
browser (Debian's Chromium, headless, as in test_dashboard_browser.py)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from html.parser import HTMLParser

import pytest
from playwright.sync_api import Browser, sync_playwright

from tests.support.live_server import LiveServer

from .helpers import CHROMIUM, CHROMIUM_ARGS, PROBLEM_JSON

DOC_PAGES = ["/docs", "/schema/swagger", "/schema"]


class _Page(HTMLParser):
    """Every script and stylesheet a page loads, and how much inline code or style it has (a strict CSP blocks
    those: the page must not need them)."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline = 0
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "script":
            self._in_script = True
        if (src := attributes.get("src" if tag == "script" else "href")) and tag in ("script", "link"):
            self.urls.append(src)
        self.inline += tag == "style" or "style" in attributes
        self.inline += sum(name.startswith("on") for name in attributes)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        self.inline += self._in_script and bool(data.strip())


def _directives(csp: str) -> dict[str, set[str]]:
    return {name: set(values) for name, *values in (part.split() for part in csp.split(";") if part.strip())}


@pytest.mark.parametrize("path", DOC_PAGES)
def test_the_docs_page_loads_only_local_assets_under_a_strict_csp(client, path):
    r = client.get(path)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert r.headers["x-content-type-options"] == "nosniff"
    csp = _directives(r.headers["content-security-policy"])
    assert csp["script-src"] == {"'self'"}
    assert csp["default-src"] == {"'none'"}
    assert "'unsafe-inline'" not in set().union(*csp.values())
    page = _Page()
    page.feed(r.text)
    assert page.inline == 0
    assert page.urls, "the page loads no Swagger UI"
    assert not re.search(r"https?://", r.text), "the page names an outside address"
    for url in page.urls:
        assert url.startswith("/docs/assets/"), url
        asset = client.get(url)
        assert asset.status_code == 200, url
        assert asset.headers["x-content-type-options"] == "nosniff"
        expected = {"css": "text/css", "js": "text/javascript", "png": "image/png"}[url.rsplit(".", 1)[1]]
        assert asset.headers["content-type"].startswith(expected), url


@pytest.mark.parametrize("name", ["nope.js", "index.html", "..%2Fapp.py", "swagger-ui.js.map"])
def test_anything_else_under_docs_assets_is_a_404_problem(client, name):
    r = client.get(f"/docs/assets/{name}")
    assert r.status_code == 404
    assert r.headers["content-type"].startswith(PROBLEM_JSON)


@pytest.fixture
def browser(live_server: LiveServer) -> Iterator[Browser]:
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(reason + "; .ci/run should have installed it")
        pytest.skip(reason)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def test_swagger_ui_renders_every_tag_in_a_browser_without_a_csp_violation(live_server, browser, tmp_path):
    page = browser.new_page()
    problems: list[str] = []
    outside: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on(
        "request", lambda q: outside.append(q.url) if not q.url.startswith(live_server.base_url) else None
    )
    page.goto(live_server.base_url + "/docs")
    page.wait_for_selector(".opblock-tag", timeout=30_000)
    shown = {t.get_attribute("data-tag") for t in page.query_selector_all(".opblock-tag")}
    page.screenshot(path=str(tmp_path / "docs.png"))  # to look at when it fails
    page.close()
    assert {"accounts", "catalog", "cart", "orders", "seller", "admin"} <= shown
    assert problems == []
    assert [u for u in outside if not u.startswith("data:")] == []
