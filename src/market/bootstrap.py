"""The composition root: the one place that builds adapters and wires them to the use cases.

How a controller gets a use case (follow this when adding a route):
1. The use case is an async function in `market.application`: its input first, then its ports keyword-only
   (`async def view_cart(buyer, *, uow)`). Next to it, a `Callable` alias names it as controllers see it, ports
   bound: `ViewCart = Callable[[User], Awaitable[Cart]]` (the CamelCase of the function's name).
2. `bind_use_cases` below binds it once, with its ports (`BoundUseCase`, a `functools.partial` whose repr hides
   the ports), under the function's name;
   wrappers that add business spans or other telemetry are applied here too (adapters/telemetry/use_cases.py),
   so the use case never imports OpenTelemetry.
3. `create_app` registers every bound use case as a Litestar dependency of the same name
   (`Provide`, one per use case), so a handler asks for it by parameter name and alias:
   `async def get_cart(self, user: User, view_cart: ViewCart) -> CartOut: return CartOut.of(await view_cart(user))`.
   The controller parses, calls one use case and shapes the response; it never sees a port.
A test (tests/unit/test_use_case_wiring.py) fails when a handler asks for a use case that is not bound, or one
is bound that no handler asks for. Inside a use case, domain events go through the unit of work
(`await work.collect(events, now)`): recorded with the work, published only after it commits.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import hmac
import ipaddress
import logging.config
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from argon2 import PasswordHasher as Argon2
from litestar import Litestar
from litestar.di import Provide
from opentelemetry import trace

from market.adapters.background import cancel_and_wait
from market.adapters.db.admin import PiccoloAdminUnitOfWork, SqlAuditLog, SqlUserDirectory
from market.adapters.db.analytics import SqlAnalyticsReports
from market.adapters.db.commerce import SqlIdempotencyStore
from market.adapters.db.database import Database
from market.adapters.db.errors import unavailable_reason
from market.adapters.db.repositories import PiccoloReadRepositories, PiccoloUnitOfWork
from market.adapters.db.sandbox import SqlSandboxLedger
from market.adapters.db.sessions import SqlSessionStore
from market.adapters.db.webhooks import PiccoloSellerWebhookRepository, SqlWebhookDeliveryRepository
from market.adapters.http.app import create_app
from market.adapters.http.limits import RouteLimits
from market.adapters.http.sessions import SessionLinks
from market.adapters.payments.events import SignedProviderEvents
from market.adapters.payments.sandbox import SandboxPaymentGateway
from market.adapters.security.devices import KnownDevices
from market.adapters.security.limits import Limiter, StoreSignInThrottle, build_store
from market.adapters.security.passwords import Argon2PasswordHasher
from market.adapters.security.tokens import JwtTokenService, load_or_create_secret_key
from market.adapters.telemetry.business import refresh_business_gauges_forever
from market.adapters.telemetry.events import OtelEventPublisher
from market.adapters.telemetry.payments import TracedPaymentGateway
from market.adapters.telemetry.use_cases import traced_apply_provider_event, traced_checkout
from market.adapters.webhooks.sender import HttpxWebhookSender
from market.adapters.webhooks.signing import new_secret
from market.adapters.webhooks.ssrf import SsrfGuard
from market.adapters.webhooks.worker import WebhookDeliveryWorker
from market.application import (
    accounts,
    admin,
    analytics,
    cart,
    catalog,
    checkout,
    deliveries,
    moderation,
    provider_events,
    seller_webhooks,
    sessions,
)
from market.application.admin import AdminPorts
from market.application.analytics import prune_events
from market.application.checkout import reconcile_payments
from market.application.ports import PaymentGateway, SessionRecorder, SessionStore
from market.application.seller_webhooks import SellerWebhookPorts
from market.application.services import Services
from market.config import ConfigError, Settings
from market.domain.redaction import safe_url
from market.ops import dashboard as ops_dashboard
from market.ops import selftest
from market.ops.alerting.monitor import AlertMonitor, FileLease, Lease, RedisLease
from market.ops.alerting.notifiers import (
    Notifier,
    SlackWebhookNotifier,
    SmtpEmailNotifier,
    default_sender,
)
from market.ops.alerting.readings import ExpositionReadings
from market.ops.alerting.rules import AlertEvaluator, default_rules
from market.ops.backups.manifest import newest_archive_time
from market.telemetry import names, request_context
from market.telemetry.asgi import ServerSpanMiddleware
from market.telemetry.logs import AccessLog, logging_config
from market.telemetry.names import INSTRUMENTATION_SCOPE
from market.telemetry.sentry import close_sentry, init_sentry, never_send
from market.telemetry.sessions import SessionRecording
from market.telemetry.setup import Telemetry, install_telemetry

log = logging.getLogger(__name__)

IDEMPOTENCY_RETENTION = timedelta(hours=48)  # the contract promises at least 24 h
METRICS_SHARE_INTERVAL_S = 5.0


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class UuidGenerator:
    def new_id(self) -> str:
        return str(uuid.uuid4())


def configure_logging(settings: Settings, stream: str = "ext://sys.stdout") -> None:
    logging.config.dictConfig(logging_config(settings.telemetry.log_level, stream))


def warn_if_sandbox_exposed(settings: Settings, host: str) -> None:
    """One WARNING line when the sandbox gateway (where test card tokens such as `tok_visa` always pay) is served
    on an interface other than loopback: anyone who reaches it can "buy" without paying."""
    if settings.payments.gateway != "sandbox" or _is_loopback(host):
        return
    log.warning(
        "the sandbox payment gateway is serving on a non-loopback interface: anyone who can reach it can pay "
        "with test cards such as tok_visa; set MARKET_PAYMENT_GATEWAY=stripe or bind 127.0.0.1",
        extra={"host": host},
    )


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name: it may resolve anywhere


def payment_webhook_secret(settings: Settings, secret_key: str) -> str:
    """MARKET_PAYMENT_WEBHOOK_SECRET, or one derived from the signing key (every worker derives the same)."""
    if settings.payments.webhook_secret:
        return settings.payments.webhook_secret
    return "whsec_" + hmac.new(secret_key.encode(), b"market payment webhooks", hashlib.sha256).hexdigest()


def build_gateways(
    settings: Settings, database: Database, webhook_secret: str
) -> tuple[PaymentGateway, PaymentGateway]:
    """(the configured gateway, the sandbox), each wrapped in CLIENT spans."""
    tracer = trace.get_tracer(INSTRUMENTATION_SCOPE)
    sandbox = TracedPaymentGateway(
        SandboxPaymentGateway(
            SqlSandboxLedger(database),
            webhook_url=settings.public_url + "/api/v1/webhooks/payments",
            webhook_secret=webhook_secret,
        ),
        tracer,
    )
    if settings.payments.gateway != "stripe":
        return sandbox, sandbox
    from market.adapters.payments.stripe import StripePaymentGateway

    if not settings.payments.stripe_api_key:
        raise ConfigError("STRIPE_API_KEY: required when MARKET_PAYMENT_GATEWAY=stripe")
    return TracedPaymentGateway(
        StripePaymentGateway(api_key=settings.payments.stripe_api_key), tracer
    ), sandbox


def signing_key(settings: Settings) -> str:
    """MARKET_SECRET_KEY, or the key generated into the var folder on first start."""
    return settings.auth.secret_key or load_or_create_secret_key(settings.var_dir)


def build_admin_ports(database: Database, services: Services) -> AdminPorts:
    """The admin tools' ports (people, audit trail, moderation, deliveries), bound to their use cases by
    `bind_use_cases` (controllers never see them)."""
    return AdminPorts(
        uow=lambda: PiccoloAdminUnitOfWork(database, request_context.identity),
        directory=SqlUserDirectory(database),
        audit=SqlAuditLog(database, request_context.identity),
        deliveries=SqlWebhookDeliveryRepository(database),
        clock=services.clock,
        ids=services.ids,
    )


def build_services(
    settings: Settings,
    database: Database,
    telemetry: Telemetry | None = None,
    limiter: Limiter | None = None,
) -> Services:
    """Every port the use cases need. `limiter`: the per-account sign-in limit counts there (None: no limit)."""
    secret = signing_key(settings)
    argon2 = Argon2()
    refused = refusal_counter(telemetry)
    webhook_secret = payment_webhook_secret(settings, secret)
    never_send(secret, webhook_secret, *settings.secret_values())
    gateway, sandbox = build_gateways(settings, database, webhook_secret)
    events = OtelEventPublisher(telemetry.instruments if telemetry else None)
    return Services(
        uow=lambda: PiccoloUnitOfWork(database, request_context.identity, events),
        repos=PiccoloReadRepositories(database, request_context.identity),
        hasher=Argon2PasswordHasher(
            argon2,
            concurrency=settings.limits.hash_concurrency,
            wait_s=settings.limits.hash_wait_s,
            # Without limits there are no known devices either: one lane for every caller.
            reserved=settings.limits.hash_reserved if limiter is not None else 0,
            on_refused=lambda: refused("password-hashing"),
        ),
        tokens=JwtTokenService(secret, settings.auth.token_ttl_seconds),
        ids=UuidGenerator(),
        clock=SystemClock(),
        events=events,
        dummy_password_hash=argon2.hash(uuid.uuid4().hex),
        gateway=gateway,
        sandbox_gateway=sandbox,
        idempotency=SqlIdempotencyStore(database),
        payment_webhook_secret=webhook_secret,
        webhooks=SellerWebhookPorts(
            endpoints=PiccoloSellerWebhookRepository(database),
            deliveries=SqlWebhookDeliveryRepository(database),
            guard=SsrfGuard(allow_private=settings.webhooks.allow_private),
            new_secret=new_secret,
        ),
        reports=SqlAnalyticsReports(database),
        cart_abandon_after=timedelta(seconds=settings.analytics.cart_abandon_after_s),
        analytics_retention=timedelta(days=settings.analytics.retention_days),
        sign_in_throttle=(
            StoreSignInThrottle(limiter, settings.limits.account_failures) if limiter is not None else None
        ),
    )


class BoundUseCase(partial[Any]):
    """A use case with its ports bound. Its repr names the use case only: a port may hold a secret (the dummy
    password hash, keys inside services) and a repr ends up in tracebacks and Sentry's local variables."""

    def __repr__(self) -> str:
        return f"<{self.func.__module__}.{self.func.__qualname__}, ports bound>"


def bind_use_cases(
    services: Services,
    *,
    admin_ports: AdminPorts,
    session_store: SessionStore,
    session_recorder: SessionRecorder,
) -> dict[str, Callable[..., Any]]:
    """Every use case a controller may call, its ports bound, by the name controllers ask for it (see the module
    docstring). The CLI may call these too."""
    s = services
    tracer = trace.get_tracer(INSTRUMENTATION_SCOPE)
    place_order = traced_checkout(
        BoundUseCase(checkout.checkout, uow=s.uow, gateway=s.gateway, ids=s.ids, clock=s.clock),
        tracer,
    )
    apply_provider_event = traced_apply_provider_event(
        BoundUseCase(checkout.apply_provider_event, uow=s.uow, clock=s.clock), s.uow, tracer
    )
    webhooks = s.webhooks
    record_admin_action = BoundUseCase(admin.record_admin_action, ports=admin_ports)
    return {
        # accounts
        "register_user": BoundUseCase(
            accounts.register_user, uow=s.uow, hasher=s.hasher, ids=s.ids, clock=s.clock
        ),
        "issue_token": BoundUseCase(
            accounts.issue_token,
            repos=s.repos,
            uow=s.uow,
            hasher=s.hasher,
            tokens=s.tokens,
            clock=s.clock,
            dummy_hash=s.dummy_password_hash,
            throttle=s.sign_in_throttle,
        ),
        "user_of_token": BoundUseCase(accounts.user_of_token, tokens=s.tokens, repos=s.repos),
        "change_password": BoundUseCase(accounts.change_password, uow=s.uow, hasher=s.hasher),
        "sign_out_everywhere": BoundUseCase(accounts.sign_out_everywhere, uow=s.uow),
        # catalog
        "browse_items": BoundUseCase(catalog.browse_items, repos=s.repos, clock=s.clock, events=s.events),
        "view_item": BoundUseCase(catalog.view_item, repos=s.repos, clock=s.clock, events=s.events),
        "list_item": BoundUseCase(catalog.list_item, uow=s.uow, ids=s.ids, clock=s.clock),
        "edit_item": BoundUseCase(moderation.edit_item, ports=admin_ports, uow=s.uow),
        "archive_item": BoundUseCase(catalog.archive_item, uow=s.uow, clock=s.clock),
        # cart and orders
        "view_cart": BoundUseCase(cart.view_cart, uow=s.uow),
        "set_cart_quantity": BoundUseCase(cart.set_cart_quantity, uow=s.uow, clock=s.clock),
        "idempotent_checkout": BoundUseCase(
            checkout.idempotent_checkout, place_order=place_order, idempotency=s.idempotency, clock=s.clock
        ),
        "list_orders": BoundUseCase(checkout.list_orders, uow=s.uow),
        "get_order": BoundUseCase(checkout.get_order, uow=s.uow),
        "receive_provider_event": BoundUseCase(
            provider_events.receive_provider_event,
            source=SignedProviderEvents.for_gateway(s.gateway.name, s.payment_webhook_secret),
            apply=apply_provider_event,
            events=s.events,
        ),
        # seller webhooks
        "set_seller_webhook": BoundUseCase(
            seller_webhooks.set_seller_webhook,
            endpoints=webhooks.endpoints,
            guard=webhooks.guard,
            new_secret=webhooks.new_secret,
            clock=s.clock,
        ),
        "get_seller_webhook": BoundUseCase(seller_webhooks.get_seller_webhook, endpoints=webhooks.endpoints),
        "list_webhook_deliveries": BoundUseCase(
            seller_webhooks.list_webhook_deliveries, deliveries=webhooks.deliveries
        ),
        # analytics
        "run_report": BoundUseCase(
            analytics.run_report, reports=s.reports, clock=s.clock, abandon_after=s.cart_abandon_after
        ),
        "seller_dashboard": BoundUseCase(analytics.seller_dashboard, reports=s.reports),
        # operations
        "run_monitoring_self_test": BoundUseCase(
            selftest.run_monitoring_self_test,
            record_admin_action=record_admin_action,
            produce_monitoring_signal=BoundUseCase(
                selftest.produce_monitoring_signal,
                sandbox_gateway=s.sandbox_gateway,
                events=s.events,
                analytics=s.repos.analytics,
                clock=s.clock,
            ),
        ),
        "figures": BoundUseCase(
            ops_dashboard.figures, reports=s.reports, clock=s.clock, abandon_after=s.cart_abandon_after
        ),
        # admin tools (people, audit trail, moderation, webhook deliveries)
        "find_users": BoundUseCase(admin.find_users, ports=admin_ports),
        "change_account": BoundUseCase(admin.change_account, ports=admin_ports),
        "find_audit": BoundUseCase(admin.find_audit, ports=admin_ports),
        "set_item_status": BoundUseCase(moderation.set_item_status, ports=admin_ports),
        "find_items": BoundUseCase(moderation.find_items, repos=s.repos),
        "find_deliveries": BoundUseCase(deliveries.find_deliveries, ports=admin_ports),
        "retry_delivery": BoundUseCase(deliveries.retry_delivery, ports=admin_ports),
        # session replay
        "find_sessions": BoundUseCase(sessions.find_sessions, store=session_store, users=s.repos.users),
        "session_timeline": BoundUseCase(sessions.session_timeline, store=session_store),
        "add_client_events": BoundUseCase(
            sessions.add_client_events, recorder=session_recorder, clock=s.clock
        ),
        # not a use case: the present, for input that is relative to it (a report's default period)
        "now": s.clock.now,
    }


def refusal_counter(telemetry: Telemetry | None) -> Callable[[str], None]:
    """Counts a refusal by an abuse limit or the hashing budget in `market.rate_limit.refused{bucket}`."""

    def refused(bucket: str) -> None:
        if telemetry is not None:
            telemetry.instruments.rate_limit_refused.add(1, {names.RATE_LIMIT_BUCKET: bucket})

    return refused


async def reconcile_forever(services: Services, interval_s: float) -> None:
    """The background reconciler: settles orders whose payment outcome was unknown, and forgets
    idempotency keys and analytics events past their retention. Safe in every worker at once (settling is
    idempotent; deleting what is past retention twice deletes nothing the second time)."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            counts = await reconcile_payments(
                uow=services.uow, gateway=services.gateway, clock=services.clock
            )
            if counts["paid"] or counts["payment_failed"]:
                log.info("reconciled payments", extra=counts)
            await services.idempotency.purge(services.clock.now() - IDEMPOTENCY_RETENTION)
            await prune_events(services.analytics_retention, reports=services.reports, clock=services.clock)
        except Exception:
            log.exception("reconciliation failed; will retry")


def build_alert_monitor(settings: Settings, telemetry: Telemetry) -> AlertMonitor:
    """The in-process alert rules over this service's metrics, and whoever should hear about them."""
    alerts = settings.alerts
    notifiers: list[Notifier] = []
    if alerts.slack_webhook_url:
        notifiers.append(SlackWebhookNotifier(alerts.slack_webhook_url))
    if alerts.smtp is not None:
        notifiers.append(
            SmtpEmailNotifier(alerts.smtp, alerts.email_to, alerts.email_from or default_sender())
        )
    lease: Lease | None = None
    if notifiers and settings.limits.redis_url:
        # Replicas: one notifier among all of them; the lease outlives a few missed evaluations.
        lease = RedisLease.from_url(
            settings.limits.redis_url, settings.limits.redis_prefix, ttl_s=3 * alerts.eval_interval_s + 2
        )
    elif notifiers:
        lease = FileLease(settings.var_dir / "alerts.lock")
    return AlertMonitor(
        AlertEvaluator(
            default_rules(
                backups_scheduled=settings.backup.schedule is not None,
                hold=None if alerts.hold_s is None else timedelta(seconds=alerts.hold_s),
            ),
            SystemClock(),
        ),
        ExpositionReadings(telemetry.exposition, partial(newest_archive_time, settings.backup.directory)),
        interval_s=alerts.eval_interval_s,
        notifiers=notifiers,
        lease=lease,
        origin=f"{settings.telemetry.service_name} at {safe_url(settings.public_url)}",
    )


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
    database = Database(settings.database)
    session_store = SqlSessionStore(database)
    recording = SessionRecording(session_store, retention=timedelta(days=settings.sessions.retention_days))
    limiter = (
        Limiter(build_store(settings.limits), refusal_counter(telemetry)) if settings.limits.enabled else None
    )
    services = build_services(settings, database, telemetry, limiter)
    alerts = build_alert_monitor(settings, telemetry)

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        # Every step that started something registers how to stop it at once, so that a start that fails
        # half-way (database gone, locked, migration refused) still closes what it had opened; each stop is
        # bounded, so a shutdown ends whatever the background work is awaiting.
        async with contextlib.AsyncExitStack() as stack:
            if limiter is not None:
                stack.push_async_callback(limiter.close)
            if worker:
                stack.push_async_callback(shutdown_telemetry, telemetry)
            stack.push_async_callback(close_gateways, services)
            if isinstance(services.hasher, Argon2PasswordHasher):
                stack.callback(services.hasher.close)
            await database.start()
            stack.push_async_callback(database.close)
            if auto_migrate:
                await database.migrate()
            recording.start()
            stack.push_async_callback(recording.stop)  # before the pool closes: the last batch is written
            background = [
                asyncio.create_task(
                    reconcile_forever(services, settings.payments.reconcile_interval_s), name="reconciler"
                ),
                asyncio.create_task(
                    refresh_business_gauges_forever(services, telemetry.instruments), name="business-gauges"
                ),
            ]
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
                services.webhooks.deliveries,
                webhook_sender,
                services.clock,
                settings.webhooks.retry_schedule_s,
            )
            webhook_worker.start()
            stack.push_async_callback(webhook_worker.stop)
            alerts.start()
            stack.push_async_callback(alerts.stop)
            log.info("market is ready", extra={"database": settings.database.url.redacted()})
            yield

    app = create_app(
        bind_use_cases(
            services,
            admin_ports=build_admin_ports(database, services),
            session_store=session_store,
            session_recorder=recording,
        ),
        database,
        metrics=telemetry.exposition,
        metrics_token=settings.telemetry.metrics_token,
        max_body_bytes=settings.server.max_body_bytes,
        alerts=alerts,
        limits=(
            RouteLimits.of(settings.limits, limiter, KnownDevices(signing_key(settings)))
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
    )
    return app


def session_links(settings: Settings) -> SessionLinks:
    return SessionLinks(settings.sessions.trace_url_template, settings.sessions.sentry_url_template)


def session_dependencies(links: SessionLinks) -> dict[str, Provide]:
    """What session replay's pages need besides their use cases: the addresses of the trace and Sentry pages."""
    return {"session_links": Provide(lambda: links, sync_to_thread=False)}


async def close_gateways(services: Services) -> None:
    await services.gateway.close()
    if services.sandbox_gateway is not services.gateway:
        await services.sandbox_gateway.close()


async def shutdown_telemetry(telemetry: Telemetry) -> None:
    """Flush this worker's metrics for its siblings, then the exporters and Sentry."""
    telemetry.exposition.write_snapshot()
    # Side by side: each has its own deadline (3 s, 2 s); one after the other they overran 5 s.
    await asyncio.gather(asyncio.to_thread(telemetry.shutdown), asyncio.to_thread(close_sentry))


async def share_metrics_forever(telemetry: Telemetry, interval_s: float = METRICS_SHARE_INTERVAL_S) -> None:
    """Leave this worker's metrics where sibling workers' /metrics can add them up."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            await asyncio.to_thread(telemetry.exposition.write_snapshot)
        except OSError:
            log.warning("could not write the metrics snapshot", exc_info=True)


def app_factory() -> Any:
    """Entry point for uvicorn workers (each builds its own providers after fork)."""
    app = build_app(worker=True)
    # A request allocates thousands of short-lived objects; the default generation-0 threshold (700) runs the
    # collector several times per request. Measured on GET /items?limit=20: 398 -> 364 us of CPU per request.
    gc.set_threshold(20_000, 50, 100)
    gc.freeze()  # what start-up built lives as long as the process: keep it out of every collection
    return app
