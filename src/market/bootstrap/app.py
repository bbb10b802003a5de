"""The ASGI app: adapters built from settings, use cases bound, and a lifespan that starts and stops the
background work in order."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from litestar import Litestar
from litestar.di import Provide
from litestar.routes import HTTPRoute

from market.adapters.db.database import Database
from market.adapters.db.errors import unavailable_reason, unusable_database
from market.adapters.db.sessions import SqlSessionStore
from market.adapters.http.app import create_app
from market.adapters.http.limits import RouteLimits
from market.adapters.http.sessions import SessionLinks
from market.adapters.security.devices import KnownDevices
from market.adapters.security.limits import Limiter, build_store
from market.adapters.security.passwords import Argon2PasswordHasher, known_credentials
from market.adapters.telemetry.business import refresh_business_gauges_forever
from market.adapters.telemetry.probe import AvailabilityProbe
from market.adapters.webhooks.sender import HttpxWebhookSender
from market.adapters.webhooks.ssrf import SsrfGuard
from market.adapters.webhooks.worker import WebhookDeliveryWorker
from market.background import cancel_and_wait
from market.batching import flushed_first
from market.config import Settings
from market.telemetry.asgi import ServerSpanMiddleware
from market.telemetry.logs import AccessLog
from market.telemetry.sentry import init_sentry
from market.telemetry.sessions import SessionRecording
from market.telemetry.setup import install_telemetry

from .adapters import (
    build_admin_ports,
    build_alert_monitor,
    build_ports,
    close_gateways,
    configure_logging,
    refusal_counter,
    session_links,
    signing_key,
)
from .background import reconcile_forever, share_metrics_forever, shutdown_telemetry
from .use_cases import bind_use_cases

log = logging.getLogger(__name__)

STARTUP_PROBLEM = "market.startup_problem"
"""Key in the app's state: the one line the lifespan logged when the database could not be used at start-up."""


def build_app(
    settings: Settings | None = None, *, auto_migrate: bool = True, worker: bool = False
) -> Litestar:
    """The ASGI app. `worker=True` (uvicorn workers, via app_factory) also shares this process's metrics
    with its sibling workers and shuts telemetry down at exit; tests build many apps in one process and
    leave both alone."""
    settings = settings or Settings.from_env()
    configure_logging(settings)
    telemetry = install_telemetry(settings)
    links = session_links(settings)
    init_sentry(settings.sentry, session_page=settings.public_url + links.session_page)
    database = Database(settings.database, telemetry.instruments.db_duration)
    session_store = SqlSessionStore(database)
    recording = SessionRecording(session_store, retention=timedelta(days=settings.sessions.retention_days))
    limiter = (
        Limiter(build_store(settings.limits), refusal_counter(telemetry)) if settings.limits.enabled else None
    )
    ports = build_ports(settings, database, telemetry, limiter)
    alerts = build_alert_monitor(settings, telemetry)

    async def write_buffered() -> None:
        """What this process buffered for session replay (its requests and client events) and the analytics
        events its timelines show: written before an operator reads sessions, so that they see every request
        this process answered before (other processes' follow within their flush interval)."""
        await recording.flush()
        if ports.analytics_writer is not None:
            await ports.analytics_writer.flush()

    use_cases = bind_use_cases(
        ports,
        admin_ports=build_admin_ports(database, ports),
        session_store=flushed_first(session_store, write_buffered),
        session_recorder=recording,
    )

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        # Every step that started something registers how to stop it at once, so that a start that fails
        # half-way (database gone, locked, migration refused) still closes what it had opened; each stop is
        # bounded, so a shutdown ends whatever the background work is awaiting.
        async with contextlib.AsyncExitStack() as stack:
            if limiter is not None:
                stack.push_async_callback(limiter.close)
            if worker:
                stack.push_async_callback(shutdown_telemetry, telemetry)
            stack.push_async_callback(close_gateways, ports)
            if isinstance(ports.hasher, Argon2PasswordHasher):
                stack.callback(ports.hasher.close)
            try:
                await database.start()
                stack.push_async_callback(database.close)
                if auto_migrate:
                    await database.migrate()
            except Exception as exc:
                # Unreachable, or no sound SQLite file: one line an operator can act on, not a traceback (the
                # start still fails; app_factory keeps uvicorn from logging the traceback as well).
                problem = unusable_database(exc, settings.database.url.redacted())
                if problem is not None:
                    log.error(problem, extra={"database": settings.database.url.redacted()})
                    app.state[STARTUP_PROBLEM] = problem
                raise
            recording.start()
            stack.push_async_callback(recording.stop)  # before the pool closes: the last batch is written
            if ports.analytics_writer is not None:
                ports.analytics_writer.start()
                stack.push_async_callback(ports.analytics_writer.stop)  # idem: buffered views and searches
            background = [
                asyncio.create_task(
                    reconcile_forever(ports, settings.payments.reconcile_interval_s, telemetry.instruments),
                    name="reconciler",
                ),
                asyncio.create_task(
                    refresh_business_gauges_forever(
                        use_cases["run_report"],
                        ports.clock.now,
                        telemetry.instruments,
                        settings.analytics.gauges_interval_s,
                    ),
                    name="business-gauges",
                ),
            ]
            if settings.probe.interval_s > 0:  # availability from outside: the public URL, traffic or not
                probe = AvailabilityProbe(
                    settings.probe_url, settings.probe.interval_s, telemetry.instruments
                )
                background.append(asyncio.create_task(probe.run_forever(), name="availability-probe"))
            stack.push_async_callback(cancel_and_wait, background)
            if worker:
                background.append(asyncio.create_task(share_metrics_forever(telemetry), name="metrics-share"))
            # MARKET_BACKUP_SCHEDULE: one worker takes the daily backup
            if settings.backup.schedule is not None:
                from market.ops.backups.schedule import start_in_process

                background.append(start_in_process(settings, tracer_provider=telemetry.tracer_provider))
            webhook_sender = HttpxWebhookSender(
                SsrfGuard(allow_private=settings.webhooks.allow_private),
                tracer=telemetry.tracer,
                deliveries_counter=telemetry.instruments.webhook_deliveries,
            )
            stack.push_async_callback(webhook_sender.close)
            webhook_worker = WebhookDeliveryWorker(
                ports.webhooks.deliveries,
                webhook_sender,
                ports.clock,
                settings.webhooks.retry_schedule_s,
            )
            webhook_worker.start()
            stack.push_async_callback(webhook_worker.stop)
            alerts.start()
            stack.push_async_callback(alerts.stop)
            log.info("market is ready", extra={"database": settings.database.url.redacted()})
            yield

    app = create_app(
        use_cases,
        database,
        metrics=telemetry.exposition,
        metrics_token=settings.telemetry.metrics_token,
        max_body_bytes=settings.server.max_body_bytes,
        alerts=alerts,
        limits=(
            RouteLimits.of(settings.limits, limiter, KnownDevices(signing_key(settings)), known_credentials)
            if limiter is not None
            else None
        ),
        lifespan=[lifespan],
        unavailable=unavailable_reason,
        dependencies=session_dependencies(links),
    )
    # Outside Litestar's exception handling, so that even 404s of unknown routes and 500s are traced.
    app.asgi_handler = ServerSpanMiddleware(
        app.asgi_handler,
        telemetry.tracer,
        telemetry.instruments.http_duration,
        AccessLog(via_logging=telemetry.logger_provider is not None),  # exported lines go through logging
        sessions=recording if settings.sessions.recording else None,
        exemplars_without_spans=not telemetry.spans_recorded,
    )
    telemetry.exposition.expect_routes(served_routes(app))  # their 5xx series exist at zero from the start
    return app


def served_routes(app: Litestar) -> list[tuple[str, str]]:
    """(route template, method) of every handler the app declares, as the edge middleware labels requests.
    Litestar's automatic OPTIONS answer (no handler of ours, no I/O) is left out: its zero 5xx series would add
    2 108 lines (62 paths x 2 statuses x 17 samples, +60 %) to /metrics for an answer our code cannot fail."""
    return [
        (route.path_format, method)
        for route in app.routes
        if isinstance(route, HTTPRoute)
        for method in route.methods
        if method != "OPTIONS"
    ]


def session_dependencies(links: SessionLinks) -> dict[str, Provide]:
    """What session replay's pages need besides their use cases: the addresses of the trace and Sentry pages."""
    return {"session_links": Provide(lambda: links, sync_to_thread=False)}


def app_factory() -> Any:
    """Entry point for uvicorn workers (each builds its own providers after fork)."""
    app = build_app(worker=True)
    tune_gc()
    return OneLineStartupFailure(app)


def tune_gc() -> None:
    """The garbage collector as a serving worker runs it, once the app is built (benchmarks that serve the app
    in process call this too, so that they count what production runs)."""
    # A request allocates thousands of short-lived objects; the default generation-0 threshold (700) runs the
    # collector several times per request. Measured on GET /items?limit=20: 398 -> 364 us of CPU per request.
    # Sampled spans wait in the export queue (up to a batch of 512), so at 100 % sampling the default also
    # collected generations 1 and 2 over them: 40-120 us per request, none with these settings.
    gc.set_threshold(20_000, 50, 100)
    gc.freeze()  # what start-up built lives as long as the process: keep it out of every collection


class OneLineStartupFailure:
    """The app as uvicorn serves it. A start that failed for a reason the lifespan already logged in one line
    (STARTUP_PROBLEM) is reported to the server without text: Litestar sends the whole traceback (an exception
    group, kilobytes), which uvicorn would log again as one more ERROR line."""

    def __init__(self, app: Litestar) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            send = self._quiet_when_said(send)
        await self.app(scope, receive, send)

    def _quiet_when_said(self, send: Any) -> Any:
        async def quiet(message: Any) -> None:
            if message["type"] == "lifespan.startup.failed" and STARTUP_PROBLEM in self.app.state:
                message = {**message, "message": ""}
            await send(message)

        return quiet
