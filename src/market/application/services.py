"""The ports a running service has, built once by bootstrap.py, which binds the use cases with them
(`bind_use_cases`); the CLI and the background tasks read them too. Controllers never see this bundle: they
receive bound use cases by dependency injection (see bootstrap.py's docstring)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from .ports import (
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
from .seller_webhooks import SellerWebhookPorts


@dataclass(frozen=True, slots=True)
class Services:
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
