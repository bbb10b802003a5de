"""The Litestar application: routes, dependencies, exception handlers, OpenAPI."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from litestar import Litestar, Request, Response, Router
from litestar.datastructures import State
from litestar.di import Provide
from litestar.exceptions import NotFoundException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, Tag
from litestar.routes import HTTPRoute

from market import __version__
from market.telemetry.prometheus import MetricsExposition

from .accounts import AccountController
from .admin import AdminController
from .admin_items import AdminItemsController
from .admin_orders import AdminOrdersController
from .admin_people import AdminPeopleController
from .admin_webhooks import AdminWebhooksController, SellerDeliveryRetryController
from .alerts import AlertBoard, AlertController
from .analytics import AnalyticsController, SellerDashboardController
from .auth import provide_user
from .cart import CartController
from .dashboard import dashboard_router
from .docs import LocalSwaggerRenderPlugin, add_security_headers, docs_router
from .health import Readiness, live, ready
from .items import ItemController
from .limits import RouteLimits
from .metrics import metrics as metrics_endpoint
from .openapi import StructSchemaPlugin, add_links, bearer_where_guarded, errors_as_problems
from .orders import CheckoutController
from .payment_webhooks import payment_webhook
from .problems import CATALOGUE, UnavailableReason, exception_handlers
from .query import strict_input
from .seller import SellerWebhookController
from .seller_pages import seller_pages_router
from .sessions import SessionController, add_session_events
from .templating import template_config


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
        tags=[
            Tag(name="accounts"),
            Tag(name="catalog"),
            Tag(name="cart"),
            Tag(name="orders"),
            Tag(name="webhooks"),
            Tag(name="seller"),
            Tag(name="admin"),
            Tag(name="sessions"),
            Tag(name="operations"),
        ],
        components=Components(
            security_schemes={"bearer": {"type": "http", "scheme": "bearer"}}  # type: ignore[dict-item]
        ),
        openapi_router=Router(
            "/schema", route_handlers=[], include_in_schema=False, after_request=_schema_after_request
        ),
    )


def _schema_after_request(response: Response[Any]) -> Response[Any]:
    """Litestar answers unknown paths under /schema with its own bare HTML 404; make them ours (problem+json,
    or the friendly page for browsers) like any other unknown route. The rest gets the docs' headers: /schema
    and /schema/swagger serve the documentation page too."""
    if response.status_code == 404:
        raise NotFoundException()
    return add_security_headers(response)


_SWAGGER = LocalSwaggerRenderPlugin(path="/swagger")


def _from_state(key: str) -> Any:
    def provide(request: Request[Any, Any, Any]) -> Any:
        return request.app.state[key]

    return provide


def _constant(value: Any) -> Provide:
    def provide() -> Any:
        return value

    return Provide(provide, sync_to_thread=False)


def use_case_dependencies(use_cases: Mapping[str, Callable[..., Any]]) -> dict[str, Provide]:
    """One dependency per bound use case, under its name (market.bootstrap's docstring tells the pattern)."""
    return {name: _constant(use_case) for name, use_case in use_cases.items()}


def create_app(
    use_cases: Mapping[str, Callable[..., Any]],
    database: Readiness,
    *,
    metrics: MetricsExposition,
    metrics_token: str | None = None,
    max_body_bytes: int,
    alerts: AlertBoard | None = None,
    limits: RouteLimits | None = None,
    lifespan: Sequence[Any] = (),
    unavailable: UnavailableReason | None = None,
    dependencies: Mapping[str, Provide] | None = None,
) -> Litestar:
    """The app. `use_cases` are the bound use cases handlers receive by name (see market.bootstrap); the bearer
    guard reads tokens with the one named `user_of_token`. `limits` are the per-IP rate limits of the guarded
    routes (None: no limits); a request body over `max_body_bytes` is refused with 413; `unavailable` tells which
    exceptions mean "the database cannot serve this now" (a 503 instead of a 500; None: every unexpected exception
    is a 500). `dependencies`: other values handlers ask for by name (not ports: a controller calls use cases)."""
    api = Router(
        path="/api/v1",
        route_handlers=[
            AccountController,
            ItemController,
            CartController,
            CheckoutController,
            payment_webhook,
            AdminController,
            AdminPeopleController,
            AdminOrdersController,
            AdminItemsController,
            AdminWebhooksController,
            SellerDeliveryRetryController,
            AlertController,
            AnalyticsController,
            SellerWebhookController,
            SellerDashboardController,
            SessionController,
            add_session_events,
        ],
    )

    app = Litestar(
        route_handlers=[
            api,
            dashboard_router(),
            seller_pages_router(),
            docs_router(),
            live,
            ready,
            metrics_endpoint,
        ],
        dependencies={
            "database": Provide(_from_state("database"), sync_to_thread=False),
            "user": Provide(provide_user),
            **use_case_dependencies(use_cases),
            **(dependencies or {}),
        },
        exception_handlers=exception_handlers(),
        openapi_config=_openapi(),
        template_config=template_config(),
        request_max_body_size=max_body_bytes,
        lifespan=list(lifespan),
        state=State(
            {
                "user_of_token": use_cases["user_of_token"],  # guards have no dependency injection
                "database": database,
                "metrics": metrics,
                "metrics_token": metrics_token,
                "alerts": alerts,
                "limits": limits,
                "unavailable": unavailable,
            }
        ),
        debug=False,
        logging_config=None,  # logging is configured once, by bootstrap (JSON lines)
        plugins=[StructSchemaPlugin()],
        before_request=strict_input,
    )
    _fix_options_allow(app)
    # Built now, once every route is registered (registering another route later rebuilds it without this).
    bearer_where_guarded(app)
    errors_as_problems(app.openapi_schema)
    add_links(app.openapi_schema)
    return app


def _fix_options_allow(app: Litestar) -> None:
    """Litestar 2.x bug (litestar-org/litestar#4169, fixed in 3.0): the automatic OPTIONS handler of a path
    served by several handlers keeps the route object of the first registration in its closure, so its `Allow`
    lists only some of the methods (`OPTIONS /items` said `GET, OPTIONS`). Point each at its final route."""
    for route in app.routes:
        if not isinstance(route, HTTPRoute) or "OPTIONS" not in route.route_handler_map:
            continue
        handler, _ = route.route_handler_map["OPTIONS"]
        for cell in getattr(handler.fn, "__closure__", None) or ():
            if isinstance(cell.cell_contents, HTTPRoute):
                cell.cell_contents = route
