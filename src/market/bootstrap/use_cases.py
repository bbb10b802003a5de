"""Use cases bound to their ports, once: the controllers' (`bind_use_cases`, by name) and the commands'
(`command_use_cases`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from opentelemetry import trace

from market.adapters.db.database import Database
from market.adapters.payments.events import SignedProviderEvents
from market.adapters.telemetry.use_cases import (
    traced_apply_provider_event,
    traced_checkout,
    traced_refund_order,
)
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
    refunds,
    seller_webhooks,
    sessions,
)
from market.application.admin import AdminPorts
from market.application.analytics import RunReport
from market.application.ports import (
    SessionRecorder,
    SessionStore,
)
from market.config import Settings
from market.domain.users import User
from market.ops import dashboard as ops_dashboard
from market.ops import selftest
from market.telemetry.names import INSTRUMENTATION_SCOPE

from .adapters import Ports, build_ports, close_gateways


class BoundUseCase(partial[Any]):
    """A use case with its ports bound. Its repr names the use case only: a port may hold a secret (the dummy
    password hash, keys inside ports) and a repr ends up in tracebacks and Sentry's local variables."""

    def __repr__(self) -> str:
        return f"<{self.func.__module__}.{self.func.__qualname__}, ports bound>"


def bind_use_cases(
    ports: Ports,
    *,
    admin_ports: AdminPorts,
    session_store: SessionStore,
    session_recorder: SessionRecorder,
) -> dict[str, Callable[..., Any]]:
    """Every use case a controller may call, its ports bound, by the name controllers ask for it (see the module
    docstring). The CLI may call these too."""
    s = ports
    tracer = trace.get_tracer(INSTRUMENTATION_SCOPE)
    place_order = traced_checkout(
        BoundUseCase(checkout.checkout, uow=s.uow, gateway=s.gateway, ids=s.ids, clock=s.clock),
        tracer,
    )
    apply_provider_event = traced_apply_provider_event(
        BoundUseCase(checkout.apply_provider_event, uow=s.uow, clock=s.clock, ids=s.ids), s.uow, tracer
    )
    refund_order = traced_refund_order(
        BoundUseCase(refunds.refund_order, ports=admin_ports, gateway=s.gateway), tracer
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
        "change_password": BoundUseCase(
            accounts.change_password, uow=s.uow, hasher=s.hasher, throttle=s.sign_in_throttle
        ),
        "sign_out_everywhere": BoundUseCase(accounts.sign_out_everywhere, uow=s.uow),
        # catalog
        "browse_items": BoundUseCase(catalog.browse_items, repos=s.repos, clock=s.clock, events=s.events),
        "view_item": BoundUseCase(catalog.view_item, repos=s.repos, clock=s.clock, events=s.events),
        "list_item": BoundUseCase(catalog.list_item, uow=s.uow, ids=s.ids, clock=s.clock),
        "edit_item": BoundUseCase(moderation.edit_item, ports=admin_ports),
        "archive_item": BoundUseCase(moderation.archive_item, ports=admin_ports),
        # cart and orders
        "view_cart": BoundUseCase(cart.view_cart, uow=s.uow),
        "set_cart_quantity": BoundUseCase(cart.set_cart_quantity, uow=s.uow, clock=s.clock),
        "idempotent_checkout": BoundUseCase(
            checkout.idempotent_checkout, place_order=place_order, idempotency=s.idempotency, clock=s.clock
        ),
        "list_orders": BoundUseCase(checkout.list_orders, uow=s.uow),
        "idempotent_refund": BoundUseCase(
            refunds.idempotent_refund, refund=refund_order, idempotency=s.idempotency, clock=s.clock
        ),
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
        "run_report": _run_report(s),
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


@dataclass(frozen=True, slots=True)
class CommandUseCases:
    """What the `market` commands call, their ports bound (the commands never see a port)."""

    reconcile_payments: Callable[[], Awaitable[dict[str, int]]]
    register_user: Callable[..., Awaitable[User]]
    """(Register, allow_admin=False)"""
    set_password: Callable[[str, str], Awaitable[User]]
    """(email, new password)"""
    disable_user: Callable[[str], Awaitable[User]]
    enable_user: Callable[[str], Awaitable[User]]
    list_users: Callable[[], Awaitable[Sequence[User]]]
    run_report: RunReport
    prune_events: Callable[[timedelta], Awaitable[int]]
    """(retention)"""
    now: Callable[[], datetime]


@asynccontextmanager
async def command_use_cases(settings: Settings, database: Database) -> AsyncIterator[CommandUseCases]:
    """The commands' use cases on `database` (started), for the length of one command."""
    s = build_ports(settings, database)
    try:
        yield CommandUseCases(
            reconcile_payments=BoundUseCase(
                checkout.reconcile_payments, uow=s.uow, gateway=s.gateway, clock=s.clock
            ),
            register_user=BoundUseCase(
                accounts.register_user, uow=s.uow, hasher=s.hasher, ids=s.ids, clock=s.clock
            ),
            set_password=BoundUseCase(accounts.set_password, uow=s.uow, hasher=s.hasher),
            disable_user=BoundUseCase(accounts.disable_user, uow=s.uow),
            enable_user=BoundUseCase(accounts.enable_user, uow=s.uow),
            list_users=BoundUseCase(accounts.list_users, repos=s.repos),
            run_report=_run_report(s),
            prune_events=BoundUseCase(analytics.prune_events, reports=s.reports, clock=s.clock),
            now=s.clock.now,
        )
    finally:
        await close_gateways(s)


def _run_report(s: Ports) -> RunReport:
    return BoundUseCase(
        analytics.run_report, reports=s.reports, clock=s.clock, abandon_after=s.cart_abandon_after
    )
