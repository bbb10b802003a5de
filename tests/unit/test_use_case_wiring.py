"""The controllers receive use cases by name (market.bootstrap's docstring): every use case a handler asks for is
bound, every bound one is asked for, and each is its use case with the ports bound, not a port."""

from __future__ import annotations

import collections.abc
import typing
from functools import partial
from pathlib import Path

import pytest
from litestar import Litestar
from litestar.handlers import HTTPRouteHandler

from market.adapters.db.database import Database
from market.bootstrap import bind_use_cases, build_admin_ports, build_app, build_ports
from market.config import Settings
from tests.support.fakes import FakeSessionRecorder, FakeSessionStore

NOT_ASKED_BY_HANDLERS = {"user_of_token"}  # the bearer guard's (guards have no dependency injection)
NOT_USE_CASES = {"user", "database", "session_links"}


def _settings(tmp_path: Path) -> Settings:
    return Settings.from_env(
        {"MARKET_DATABASE_URL": f"sqlite:///{tmp_path / 'm.db'}", "MARKET_VAR_DIR": str(tmp_path)},
        dotenv=None,
    )


@pytest.fixture
def app(tmp_path: Path) -> Litestar:
    return build_app(_settings(tmp_path), auto_migrate=False)  # never started: no query is made


def _handlers(app: Litestar) -> list[HTTPRouteHandler]:
    return [
        handler
        for route in app.routes
        for handler in getattr(route, "route_handlers", ())
        if isinstance(handler, HTTPRouteHandler)
    ]


def _asks_for_callables(handler: HTTPRouteHandler) -> set[str]:
    """The handler's parameters typed as a callable: bound use cases (by the house's pattern)."""
    parameters = handler.parsed_fn_signature.parameters
    return {
        name
        for name, parameter in parameters.items()
        if typing.get_origin(parameter.annotation) is collections.abc.Callable
    }


def test_every_use_case_a_handler_asks_for_is_bound(app: Litestar) -> None:
    bound = set(app.dependencies)
    asked = {
        (handler.handler_name, name) for handler in _handlers(app) for name in _asks_for_callables(handler)
    }
    assert asked, "no handler asks for a use case: the test looks at the wrong thing"
    assert {(handler, name) for handler, name in asked if name not in bound} == set()


def test_every_bound_use_case_is_asked_for_by_some_handler(app: Litestar) -> None:
    asked = {name for handler in _handlers(app) for name in _asks_for_callables(handler)}
    bound = set(app.dependencies) - NOT_USE_CASES
    assert bound - asked - NOT_ASKED_BY_HANDLERS == set()


def test_a_bound_use_case_is_its_function_with_ports_bound_under_its_own_name(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    database = Database(settings.database)
    services = build_ports(settings, database)
    use_cases = bind_use_cases(
        services,
        admin_ports=build_admin_ports(database, services),
        session_store=FakeSessionStore(),
        session_recorder=FakeSessionRecorder(),
    )
    for name, bound in use_cases.items():
        if isinstance(bound, partial):
            assert bound.func.__name__ == name, name
            assert bound.func.__module__.startswith(("market.application.", "market.ops.")), name
