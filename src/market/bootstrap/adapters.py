"""Settings to adapters: the ports a running service has (`build_ports`), the payment gateways, the admin
tools' ports, the alert monitor and the few values derived from settings (signing key, webhook secret)."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging.config
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial

from argon2 import PasswordHasher as Argon2
from opentelemetry import trace

from market.adapters.db.admin import PiccoloAdminUnitOfWork, SqlAuditLog, SqlUserDirectory
from market.adapters.db.analytics import BufferedAnalyticsLog, SqlAnalyticsReports
from market.adapters.db.commerce import SqlIdempotencyStore
from market.adapters.db.database import Database
from market.adapters.db.repositories import PiccoloReadRepositories, PiccoloUnitOfWork
from market.adapters.db.sandbox import SqlSandboxLedger
from market.adapters.db.webhooks import PiccoloSellerWebhookRepository, SqlWebhookDeliveryRepository
from market.adapters.http.sessions import SessionLinks
from market.adapters.payments.sandbox import SandboxPaymentGateway
from market.adapters.security.limits import Limiter, StoreSignInThrottle
from market.adapters.security.passwords import Argon2PasswordHasher
from market.adapters.security.tokens import JwtTokenService, load_or_create_secret_key
from market.adapters.telemetry.events import OtelEventPublisher
from market.adapters.telemetry.payments import TracedPaymentGateway
from market.adapters.webhooks.signing import new_secret
from market.adapters.webhooks.ssrf import SsrfGuard
from market.application.admin import AdminPorts
from market.application.ports import (
    AnalyticsReports,
    Clock,
    EventPublisher,
    IdempotencyStore,
    IdGenerator,
    PasswordHasher,
    PaymentGateway,
    ReadRepositories,
    SignInThrottle,
    TokenService,
    UnitOfWorkFactory,
)
from market.application.seller_webhooks import SellerWebhookPorts
from market.batching import BatchBuffer, flushed_first
from market.config import ConfigError, Settings
from market.domain.redaction import safe_url
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
from market.telemetry.logs import logging_config
from market.telemetry.names import INSTRUMENTATION_SCOPE
from market.telemetry.sentry import never_send
from market.telemetry.setup import Telemetry

log = logging.getLogger(__name__)


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


@dataclass(frozen=True, slots=True)
class Ports:
    """The ports a running service has, built once (`build_ports`) and bound to the use cases here; nothing
    outside the composition root sees this bundle: controllers, commands and background tasks receive bound
    use cases."""

    uow: UnitOfWorkFactory
    repos: ReadRepositories
    hasher: PasswordHasher
    tokens: TokenService  # the service (its key stays inside it)
    ids: IdGenerator
    clock: Clock
    events: EventPublisher
    dummy_password_hash: str = field(repr=False)
    """A real hash of a throwaway password: sign-in verifies against it for unknown e-mails."""
    gateway: PaymentGateway
    sandbox_gateway: PaymentGateway
    """The sandbox, whatever `gateway` is: the monitoring self-test declines a test card through it."""
    idempotency: IdempotencyStore
    payment_webhook_secret: str = field(repr=False)
    """Verifies `POST /webhooks/payments` signatures."""
    webhooks: SellerWebhookPorts
    """Seller webhook endpoints and their deliveries."""
    reports: AnalyticsReports
    cart_abandon_after: timedelta
    """A cart with no checkout this long after its last addition is abandoned (carts report)."""
    analytics_retention: timedelta
    sign_in_throttle: SignInThrottle | None = None
    """Per-account sign-in limit; None when rate limits are off (MARKET_RATE_LIMITS=off)."""
    analytics_writer: BatchBuffer | None = None
    """The buffer of item views and searches (BufferedAnalyticsLog): the app's lifespan starts and stops its
    writer; reports and session timelines flush it before they read."""


def build_admin_ports(database: Database, ports: Ports) -> AdminPorts:
    """The admin tools' ports (people, audit trail, moderation, deliveries), bound to their use cases by
    `bind_use_cases` (controllers never see them)."""
    return AdminPorts(
        uow=lambda: PiccoloAdminUnitOfWork(database, request_context.identity, ports.events),
        directory=SqlUserDirectory(database),
        audit=SqlAuditLog(database, request_context.identity),
        deliveries=SqlWebhookDeliveryRepository(database),
        clock=ports.clock,
        ids=ports.ids,
    )


def build_ports(
    settings: Settings,
    database: Database,
    telemetry: Telemetry | None = None,
    limiter: Limiter | None = None,
) -> Ports:
    """Every port the use cases need. `limiter`: the per-account sign-in limit counts there (None: no limit)."""
    secret = signing_key(settings)
    argon2 = Argon2()
    refused = refusal_counter(telemetry)
    webhook_secret = payment_webhook_secret(settings, secret)
    never_send(secret, webhook_secret, *settings.secret_values())
    gateway, sandbox = build_gateways(settings, database, webhook_secret)
    events = OtelEventPublisher(telemetry.instruments if telemetry else None)
    analytics = BufferedAnalyticsLog(database, request_context.identity)
    return Ports(
        uow=lambda: PiccoloUnitOfWork(database, request_context.identity, events),
        repos=PiccoloReadRepositories(database, request_context.identity, analytics),
        hasher=Argon2PasswordHasher(
            argon2,
            concurrency=settings.limits.hash_concurrency,
            # Without limits (MARKET_RATE_LIMITS=off: test suites, load tests) nobody is refused: the cap on
            # hashes at once stays (memory, cores), and callers queue for a slot instead of getting a 503.
            wait_s=settings.limits.hash_wait_s if limiter is not None else None,
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
        reports=flushed_first(SqlAnalyticsReports(database), analytics.flush),
        cart_abandon_after=timedelta(seconds=settings.analytics.cart_abandon_after_s),
        analytics_retention=timedelta(days=settings.analytics.retention_days),
        sign_in_throttle=(
            StoreSignInThrottle(limiter, settings.limits.account_failures) if limiter is not None else None
        ),
        analytics_writer=analytics.buffer,
    )


def refusal_counter(telemetry: Telemetry | None) -> Callable[[str], None]:
    """Counts a refusal by an abuse limit or the hashing budget in `market.rate_limit.refused{bucket}`."""

    def refused(bucket: str) -> None:
        if telemetry is not None:
            telemetry.instruments.rate_limit_refused.add(1, {names.RATE_LIMIT_BUCKET: bucket})

    return refused


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


def session_links(settings: Settings) -> SessionLinks:
    return SessionLinks(settings.sessions.trace_url_template, settings.sessions.sentry_url_template)


async def close_gateways(ports: Ports) -> None:
    await ports.gateway.close()
    if ports.sandbox_gateway is not ports.gateway:
        await ports.sandbox_gateway.close()
