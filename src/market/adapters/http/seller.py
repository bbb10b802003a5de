"""The seller's webhook endpoint for `order.paid` events, and what became of each delivery."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec
from litestar import Controller, get, put
from litestar.di import NamedDependency
from litestar.params import JSONBody, Parameter

from market.application.seller_webhooks import GetSellerWebhook, ListWebhookDeliveries, SetSellerWebhook
from market.domain.users import Role, User
from market.domain.webhooks import MAX_WEBHOOK_URL, DeliveryRecord, WebhookEndpoint

from .auth import requires
from .openapi import problems
from .query import strict_request
from .redacted import RedactedStruct
from .validation import SPACE

# What check_webhook_url accepts, as a pattern both regex dialects read alike: http(s); a host name (no
# credentials, none of the characters whose NFKC form is one of /?#@:, which urlsplit refuses in a non-ASCII
# host) or a bracketed IPv6 address (zone ids and IPvFuture left out); an optional port up to 65535; no whitespace
# or control characters anywhere. Where the URL may lead (public addresses) is the SSRF guard's 422.
_HOST_CHAR = (
    rf"[^/?#@:\[\]{SPACE}\x00-\x1f"
    r"\u2047-\u2049\u2100\u2101\u2105\u2106\u2a74\ufe13\ufe16\ufe55\ufe56\ufe5f\ufe6b\uff03\uff0f\uff1a\uff1f\uff20]"
)
_H16 = "[0-9A-Fa-f]{1,4}"
_OCTET = "(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = rf"({_OCTET}\.){{3}}{_OCTET}"
_IPV6 = "|".join(
    (
        rf"({_H16}:){{7}}{_H16}",
        rf"({_H16}:){{1,7}}:",
        rf"({_H16}:){{1,6}}:{_H16}",
        rf"({_H16}:){{1,5}}(:{_H16}){{1,2}}",
        rf"({_H16}:){{1,4}}(:{_H16}){{1,3}}",
        rf"({_H16}:){{1,3}}(:{_H16}){{1,4}}",
        rf"({_H16}:){{1,2}}(:{_H16}){{1,5}}",
        rf"{_H16}:(:{_H16}){{1,6}}",
        rf":((:{_H16}){{1,7}}|:)",
        rf"({_H16}:){{6}}{_IPV4}",
        rf"::([Ff]{{4}}(:0{{1,4}})?:)?{_IPV4}",
        rf"({_H16}:){{1,4}}:{_IPV4}",
    )
)
_PORT = "0*([0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
URL_PATTERN = (
    rf"^[Hh][Tt][Tt][Pp][Ss]?://({_HOST_CHAR}+|\[({_IPV6})\])(:({_PORT})?)?"
    rf"([/?#][^{SPACE}\x00-\x1f]*)?$(?!\n)"
)


class WebhookBody(RedactedStruct, forbid_unknown_fields=True):
    secret_fields = frozenset({"url"})  # its query may carry the receiver's token

    url: Annotated[
        str,
        msgspec.Meta(
            min_length=1,
            max_length=MAX_WEBHOOK_URL,
            pattern=URL_PATTERN,
            description="http(s) URL on a public address; loopback, private and link-local targets are refused.",
        ),
    ]
    rotate_secret: Annotated[  # a flag (not a secret)
        bool,
        msgspec.Meta(description="Replace the signing secret (it is otherwise kept when the URL changes)."),
    ] = False


class WebhookOut(RedactedStruct):
    secret_fields = frozenset({"url", "secret"})

    url: str
    secret: str  # hidden from repr (secret_fields)
    """`whsec_<base64>`: verify each event's `webhook-signature` with it (Standard Webhooks)."""
    disabled_at: datetime | None
    """Set when the endpoint answered 410 Gone; no events are queued until the URL is set again."""

    @classmethod
    def of(cls, endpoint: WebhookEndpoint) -> WebhookOut:
        return cls(url=endpoint.url, secret=endpoint.secret, disabled_at=endpoint.disabled_at)


class AttemptOut(msgspec.Struct):
    attempted_at: datetime
    status_code: int | None
    """The endpoint's HTTP status; null when no response came (refused connection, timeout, ...)."""
    error: str | None
    duration_ms: int


class DeliveryOut(msgspec.Struct):
    id: str
    """Also the `webhook-id` header of every attempt (the same on retries: deduplicate on it)."""
    event_type: str
    status: Literal["pending", "delivered", "failed", "disabled"]
    attempt_count: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: datetime | None
    """When the next attempt is due; null once the delivery is settled."""
    created_at: datetime
    updated_at: datetime
    attempts: list[AttemptOut]
    """Every attempt, oldest first."""

    @classmethod
    def of(cls, record: DeliveryRecord) -> DeliveryOut:
        return cls(
            id=record.id,
            event_type=record.event_type,
            status=record.status.value,  # type: ignore[arg-type]
            attempt_count=record.attempt_count,
            last_status_code=record.last_status_code,
            last_error=record.last_error,
            next_attempt_at=record.next_attempt_at,
            created_at=record.created_at,
            updated_at=record.updated_at,
            attempts=[
                AttemptOut(a.attempted_at, a.status_code, a.error, a.duration_ms) for a in record.attempts
            ],
        )


class DeliveryPage(msgspec.Struct):
    items: list[DeliveryOut]
    next_cursor: str | None


class SellerWebhookController(Controller):
    path = "/seller/webhook"
    tags = ["webhooks"]
    guards = [requires(Role.SELLER)]

    @put(operation_id="setSellerWebhook", status_code=200, responses=problems(400, 401, 403, 422))
    async def set_webhook(
        self,
        data: JSONBody[WebhookBody],
        user: NamedDependency[User],
        set_seller_webhook: NamedDependency[SetSellerWebhook],
    ) -> WebhookOut:
        """Send the seller's `order.paid` events to `url`, signed per Standard Webhooks with `secret`.

        The secret is created on the first call and kept on later ones (`rotate_secret: true` replaces it).
        Setting the URL re-enables an endpoint disabled by a 410. The URL must be http(s) and lead to public
        addresses only: loopback, private, link-local, unique-local, multicast and cloud metadata targets are a
        422 `webhook-url-not-allowed`."""
        return WebhookOut.of(await set_seller_webhook(user, data.url, rotate_secret=data.rotate_secret))

    @get(operation_id="getSellerWebhook", responses=problems(401, 403, 404))
    async def get_webhook(
        self, user: NamedDependency[User], get_seller_webhook: NamedDependency[GetSellerWebhook]
    ) -> WebhookOut:
        """The seller's endpoint; 404 when none is set."""
        return WebhookOut.of(await get_seller_webhook(user))

    @get(
        "/deliveries",
        operation_id="listSellerWebhookDeliveries",
        before_request=strict_request,
        responses=problems(400, 401, 403),
    )
    async def list_deliveries(
        self,
        user: NamedDependency[User],
        list_webhook_deliveries: NamedDependency[ListWebhookDeliveries],
        limit: int = Parameter(default=20, ge=1, le=100),
        cursor: str | None = Parameter(default=None, description="`next_cursor` of the previous page."),
    ) -> DeliveryPage:
        """The seller's own deliveries, newest first, with every attempt: status code, error, duration, and
        when the next retry is due."""
        page = await list_webhook_deliveries(user, limit, cursor or None)
        return DeliveryPage(items=[DeliveryOut.of(d) for d in page.items], next_cursor=page.next_cursor)
