"""The composition root: the one place that builds adapters and wires them to the use cases."""

from __future__ import annotations

import logging.config
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from argon2 import PasswordHasher as Argon2
from litestar import Litestar
from opentelemetry.sdk.trace import TracerProvider

from market.adapters.db.database import Database
from market.adapters.db.repositories import PiccoloReadRepositories, PiccoloUnitOfWork
from market.adapters.http.app import create_app
from market.adapters.security.passwords import Argon2PasswordHasher
from market.adapters.security.tokens import JwtTokenService, load_or_create_secret_key
from market.adapters.telemetry.events import OtelEventPublisher
from market.application.services import Services
from market.config import Settings
from market.telemetry.asgi import ServerSpanMiddleware
from market.telemetry.logs import logging_config
from market.telemetry.names import INSTRUMENTATION_SCOPE
from market.telemetry.tracing import build_tracer_provider

log = logging.getLogger(__name__)


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class UuidGenerator:
    def new_id(self) -> str:
        return str(uuid.uuid4())


def configure_logging(settings: Settings) -> None:
    logging.config.dictConfig(logging_config(settings.telemetry.log_level))


def build_services(settings: Settings, database: Database) -> Services:
    secret = settings.auth.secret_key or load_or_create_secret_key(settings.var_dir)
    argon2 = Argon2()
    return Services(
        uow=lambda: PiccoloUnitOfWork(database),
        repos=PiccoloReadRepositories(database),
        hasher=Argon2PasswordHasher(argon2),
        tokens=JwtTokenService(secret, settings.auth.token_ttl_seconds),
        ids=UuidGenerator(),
        clock=SystemClock(),
        events=OtelEventPublisher(),
        dummy_password_hash=argon2.hash(uuid.uuid4().hex),
    )


def build_app(
    settings: Settings | None = None,
    *,
    auto_migrate: bool = True,
    tracer_provider: TracerProvider | None = None,
) -> Litestar:
    """The ASGI app for one worker process. Tests may pass their own tracer provider (in-memory exporter)."""
    settings = settings or Settings.from_env()
    configure_logging(settings)
    database = Database(settings.database)
    tracer_provider = tracer_provider or build_tracer_provider(settings)
    services = build_services(settings, database)

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        await database.start()
        if auto_migrate:
            await database.migrate()
        log.info("market is ready", extra={"database": settings.database.url.redacted()})
        try:
            yield
        finally:
            await database.close()
            tracer_provider.shutdown()

    app = create_app(services, database, lifespan=[lifespan])
    # Outside Litestar's exception handling, so that even 404s of unknown routes and 500s are traced.
    app.asgi_handler = ServerSpanMiddleware(
        app.asgi_handler, tracer_provider.get_tracer(INSTRUMENTATION_SCOPE)
    )
    return app


def app_factory() -> Any:
    """Entry point for uvicorn workers (each builds its own providers after fork)."""
    return build_app()
