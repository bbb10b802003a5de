"""The interactive documentation at /docs: Swagger UI, served by the service itself from the pinned
`swagger-ui-bundle-v2` package (the same files as swagger-ui-dist on npm), never from a CDN.

The page has no inline script or style, so its Content-Security-Policy can allow scripts from this origin only:
Swagger UI's start-up is static/docs.js. Only the few files the page needs are served, by name.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

from litestar import Request, Response, Router, get
from litestar.exceptions import NotFoundException
from litestar.openapi.plugins import OpenAPIRenderPlugin
from litestar.params import FromPath
from swagger_ui_bundle import swagger_ui_path

from .html import HTML
from .templating import template_engine

ASSETS_PATH = "/docs/assets"
SCHEMA_URL = "/schema/openapi.json"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
_JS = "text/javascript"  # Litestar adds `; charset=utf-8` to text/ types
ASSETS: dict[str, tuple[Traversable, str]] = {
    "swagger-ui.css": (swagger_ui_path / "swagger-ui.css", "text/css"),
    "swagger-ui-bundle.js": (swagger_ui_path / "swagger-ui-bundle.js", _JS),
    "favicon-32x32.png": (swagger_ui_path / "favicon-32x32.png", "image/png"),
    "docs.js": (resources.files(__package__).joinpath("static/docs.js"), _JS),
}


@cache
def page() -> bytes:
    """The documentation page (templates/docs.html), rendered once: it depends on nothing but these paths."""
    template = template_engine().engine.get_template("docs.html")
    return template.render(assets=ASSETS_PATH, schema_url=SCHEMA_URL).encode()


def add_security_headers(response: Response[Any]) -> Response[Any]:
    """The documentation's CSP and companions, on every response of its routers."""
    response.headers.update(SECURITY_HEADERS)
    return response


@cache
def _asset(name: str) -> bytes:
    return ASSETS[name][0].read_bytes()


@get("/", include_in_schema=False, media_type=HTML)
async def docs_page() -> Response[bytes]:
    """Interactive API documentation (Swagger UI over /schema/openapi.json)."""
    return Response(page(), media_type=HTML)


@get("/assets/{name:str}", include_in_schema=False)
async def docs_asset(name: FromPath[str]) -> Response[bytes]:
    """One of Swagger UI's files; anything else is a 404."""
    if name not in ASSETS:
        raise NotFoundException()
    # Revalidated hourly: the path carries no version, and an upgrade of the package must show up.
    return Response(
        _asset(name), media_type=ASSETS[name][1], headers={"Cache-Control": "public, max-age=3600"}
    )


def docs_router() -> Router:
    return Router("/docs", route_handlers=[docs_page, docs_asset], after_request=add_security_headers)


class LocalSwaggerRenderPlugin(OpenAPIRenderPlugin):
    """The same page under /schema (Litestar's own Swagger plugin loads it from a CDN)."""

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        return page()
