"""The HTML pages a browser may meet outside the dashboard's own: a friendly 404 (templates/not_found.html), and
in the people's areas (the admin pages, the seller area) any other error as a page rather than problem JSON; and
the headers every page carries."""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.response import Template

HTML = "text/html"
"""The media type of every page, without a charset: Litestar adds `; charset=utf-8` to every `text/` type
itself (one that already named it was sent as `text/html; charset=utf-8; charset=utf-8`)."""


def wants_html(request: Request[Any, Any, Any]) -> bool:
    """True when the Accept header ranks text/html above application/json, as browsers' defaults do."""
    if "text/html" not in request.headers.get("accept", ""):
        return False
    return (
        request.accept.best_match(["application/json", "text/html"], default="application/json")
        == "text/html"
    )


CSP = "default-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'"
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
"""Every page's: nothing cached, nothing external, no inline script or style, never framed."""

PEOPLES_AREAS = ("/admin/", "/seller/")
"""Paths whose answers are pages for people (README, "Admin dashboard"): their errors too, for a browser."""


def not_found_page(request: Request[Any, Any, Any]) -> Template:
    """The 404 page naming the path (escaped by the template) and the request's trace id."""
    trace_id = request.scope.get("state", {}).get("trace_id", "")
    return Template(
        "not_found.html",
        context={"path": request.url.path, "trace_id": trace_id},
        status_code=404,
        media_type=HTML,
        headers=SECURITY_HEADERS,
    )


def error_page_wanted(request: Request[Any, Any, Any]) -> bool:
    """A browser in the admin pages or the seller area: its errors are pages, not problem JSON."""
    return request.url.path.startswith(PEOPLES_AREAS) and wants_html(request)


def error_page(
    request: Request[Any, Any, Any], status: int, title: str, detail: str, headers: dict[str, str] | None
) -> Template:
    """An error (a 405, a 429, a 500...) as a plain page saying what happened, with the reference to quote."""
    trace_id = request.scope.get("state", {}).get("trace_id", "")
    login_url = "/seller/login" if request.url.path.startswith("/seller/") else "/admin/login"
    return Template(
        "message.html",
        context={
            "title": title,
            "message": detail if trace_id in detail else f"{detail} Reference: {trace_id}.",
            "signed_in": False,
            "login_url": login_url,
        },
        status_code=status,
        media_type=HTML,
        headers={**SECURITY_HEADERS, **(headers or {})},
    )
