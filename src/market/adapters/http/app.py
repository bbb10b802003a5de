"""The Litestar application: routes, dependencies, exception handlers, OpenAPI."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from litestar import Litestar, Request, Response, Router, get
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import Components, Tag

from market import __version__
from market.adapters.db.database import Database
from market.application.services import Services

from .accounts import AccountController
from .auth import provide_user
from .health import live, ready
from .items import ItemController
from .problems import CATALOGUE, exception_handlers

MAX_BODY_BYTES = 1_048_576


def _openapi() -> OpenAPIConfig:
    catalogue = "\n".join(f"- `{p.uri}` ({p.status}): {p.title}" for p in CATALOGUE)
    return OpenAPIConfig(
        title="market",
        version=__version__,
        description=(
            "An async marketplace API. Every error is an RFC 9457 problem (`application/problem+json`) "
            "carrying the request's `trace_id`; plain HTTP errors use `about:blank`.\n\n"
            f"Problem types:\n{catalogue}"
        ),
        path="/schema",
        render_plugins=[_SWAGGER],
        tags=[Tag(name="accounts"), Tag(name="catalog"), Tag(name="operations")],
        components=Components(
            security_schemes={"bearer": {"type": "http", "scheme": "bearer"}}  # type: ignore[dict-item]
        ),
    )


_SWAGGER = SwaggerRenderPlugin(path="/swagger")


@get("/docs", include_in_schema=False, media_type="text/html")
async def docs(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Interactive API documentation (Swagger UI over /schema/openapi.json)."""
    schema = request.app.openapi_schema.to_schema()
    return Response(_SWAGGER.render(request, schema), media_type="text/html; charset=utf-8")


def _from_state(key: str) -> Any:
    def provide(request: Request[Any, Any, Any]) -> Any:
        return request.app.state[key]

    return provide


def create_app(services: Services, database: Database, lifespan: Sequence[Any] = ()) -> Litestar:
    api = Router(path="/api/v1", route_handlers=[AccountController, ItemController])

    return Litestar(
        route_handlers=[api, live, ready, docs],
        dependencies={
            "services": Provide(_from_state("services"), sync_to_thread=False),
            "database": Provide(_from_state("database"), sync_to_thread=False),
            "user": Provide(provide_user),
        },
        exception_handlers=exception_handlers(),
        openapi_config=_openapi(),
        request_max_body_size=MAX_BODY_BYTES,
        lifespan=list(lifespan),
        state=State({"services": services, "database": database}),
        debug=False,
        logging_config=None,  # logging is configured once, by bootstrap (JSON lines)
    )
