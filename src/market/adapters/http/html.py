"""The one HTML page API users may meet: a friendly 404 for browsers."""

from __future__ import annotations

import html
from typing import Any

from litestar import Request, Response


def wants_html(request: Request[Any, Any, Any]) -> bool:
    """True when the Accept header ranks text/html above application/json, as browsers' defaults do."""
    if "text/html" not in request.headers.get("accept", ""):
        return False
    return (
        request.accept.best_match(["application/json", "text/html"], default="application/json")
        == "text/html"
    )


def not_found_page(request: Request[Any, Any, Any]) -> Response[str]:
    trace_id = request.scope.get("state", {}).get("trace_id", "")
    path = html.escape(request.url.path)
    body = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Page not found · market</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#222}}
code{{background:#f3f3f3;padding:.1rem .3rem;border-radius:3px}}</style></head>
<body><h1>Page not found</h1>
<p>There is nothing at <code>{path}</code>.</p>
<p>The market API and everything it offers is described in the <a href="/docs">API documentation</a>.</p>
<p><small>Reference: {html.escape(trace_id)}</small></p></body></html>"""
    return Response(content=body, status_code=404, media_type="text/html")
