"""The list filters refuse an unknown query parameter (market.adapters.http.query) by the handler's declared
query names: a filter whose Python name differs from its query name (`from_`, `QueryParameter(name="from")`)
is known as `from`, not as `from_`."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from litestar import Litestar
from litestar.datastructures import MultiDict
from litestar.exceptions import ValidationException
from litestar.handlers import HTTPRouteHandler

from market.adapters.http.query import known_query_only
from market.bootstrap import build_app
from market.config import Settings

LISTS_WITH_BOUNDS = ["/api/v1/orders", "/api/v1/admin/orders", "/api/v1/admin/audit"]


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Litestar:
    tmp_path: Path = tmp_path_factory.mktemp("query-names")
    settings = Settings.from_env(
        {"MARKET_DATABASE_URL": f"sqlite:///{tmp_path / 'm.db'}", "MARKET_VAR_DIR": str(tmp_path)},
        dotenv=None,
    )
    return build_app(settings, auto_migrate=False)  # never started: no query is made


def _list_handler(app: Litestar, path: str) -> HTTPRouteHandler:
    return next(
        handler
        for route in app.routes
        if route.path == path
        for handler in getattr(route, "route_handlers", ())
        if isinstance(handler, HTTPRouteHandler) and "GET" in handler.http_methods
    )


def _request(handler: HTTPRouteHandler, **query: str) -> SimpleNamespace:
    return SimpleNamespace(route_handler=handler, path_params={}, query_params=MultiDict(query))


@pytest.mark.parametrize("path", LISTS_WITH_BOUNDS)
async def test_the_bounds_are_known_by_their_query_names(app: Litestar, path: str) -> None:
    await known_query_only(_request(_list_handler(app, path), **{"from": "2026-01-01", "to": "2026-02-01"}))


@pytest.mark.parametrize("path", LISTS_WITH_BOUNDS)
async def test_the_python_name_of_a_bound_is_an_unknown_query_parameter(app: Litestar, path: str) -> None:
    with pytest.raises(ValidationException) as refused:
        await known_query_only(_request(_list_handler(app, path), from_="2026-01-01"))

    assert refused.value.extra == [
        {"key": "from_", "message": "is not a parameter of this list", "source": "query"}
    ]
