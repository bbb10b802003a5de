"""The one HTML page API users may meet: a friendly 404 for browsers (templates/not_found.html)."""

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


def not_found_page(request: Request[Any, Any, Any]) -> Template:
    """The 404 page naming the path (escaped by the template) and the request's trace id."""
    trace_id = request.scope.get("state", {}).get("trace_id", "")
    return Template(
        "not_found.html",
        context={"path": request.url.path, "trace_id": trace_id},
        status_code=404,
        media_type=HTML,
    )
