"""The guard against server-side request forgery: seller-supplied URLs must not make the service call into its
own network (loopback, private and link-local ranges, unique-local IPv6, cloud metadata endpoints, ...).

It runs when the URL is set and again before every attempt, because DNS answers change (DNS rebinding): the
sender then connects only to the addresses checked here. `allow_private` (MARKET_WEBHOOKS_ALLOW_PRIVATE=1,
development and tests) switches the address rules off.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import httpx

from market.domain.errors import FieldError, ValidationFailed, WebhookUrlNotAllowed

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Instance metadata services hand out cloud credentials: the classic SSRF prize. Most sit in ranges refused
# anyway; they are named so the refusal says why.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean, ...
        "169.254.170.2",  # AWS ECS task metadata
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud
        "168.63.129.16",  # Azure wireserver and DNS: a public address, yet it answers the VM's own agent
        "fd00:ec2::254",  # AWS over IPv6
        "fd20:ce::254",  # GCP over IPv6
        "169.254.169.123",  # AWS time sync
        "169.254.169.253",  # AWS VPC DNS
    )
)
# One answer for every refusal: telling "does not resolve" from "resolves to a private address" would let a
# seller map which internal names exist.
REFUSED = "must lead to a public internet address that resolves"
RESOLVE_TIMEOUT_S = 5.0  # a request that sets a URL must not hang on a slow resolver
_UNIQUE_LOCAL = ipaddress.ip_network("fc00::/7")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def refusal(ip: IPAddress) -> str | None:
    """Why the service must not connect to `ip` ("a loopback address", ...), or None when it is public."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.teredo:
            return "a Teredo tunnel address"
        if ip.ipv4_mapped is not None:  # ::ffff:a.b.c.d reaches a.b.c.d
            return refusal(ip.ipv4_mapped)
        if ip in _NAT64:  # 64:ff9b::a.b.c.d reaches a.b.c.d through the NAT64 gateway
            return refusal(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        if ip.sixtofour is not None and (reason := refusal(ip.sixtofour)):
            return reason
    if ip in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_multicast:
        return "a multicast address"
    if isinstance(ip, ipaddress.IPv6Address) and (ip in _UNIQUE_LOCAL or ip.is_site_local):
        return "a unique-local address"
    if ip.is_private:
        return "a private address"
    if ip.is_reserved or not ip.is_global:
        return "a reserved, non-public address"
    return None


Resolver = Callable[[str, int], Awaitable[list[str]]]


async def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (the system resolver, as the connection would use)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class SsrfGuard:
    def __init__(self, *, allow_private: bool, resolver: Resolver = resolve) -> None:
        self.allow_private = allow_private
        self._resolve = resolver

    async def check(self, url: str) -> None:
        """The WebhookUrlGuard port: refuse the URL when it is set (see `addresses`), and one the sender could
        never send to, whatever the address rules: a host the system resolver reads but the HTTP client refuses
        (a name valid in IDNA 2003 only, "💩.la" or one with a soft hyphen; an IPv4 address with a leading zero,
        "1.2.3.04", which the resolver reads as octal)."""
        try:
            httpx.URL(url)
        except httpx.InvalidURL:
            raise ValidationFailed(
                [FieldError("url", "has a host that is not a valid host name or address")],
                "The webhook URL is not valid.",
            ) from None
        await self.addresses(url)

    async def addresses(self, url: str) -> list[str] | None:
        """The addresses the service may connect to for `url`; None when unrestricted (allow_private).

        Raises WebhookUrlNotAllowed when the host is, or resolves to, any refused address (a name that answers
        with one public and one private address is refused: the connection could take either) or resolves to
        nothing; always with the same message, so the answer does not tell which (see REFUSED)."""
        if self.allow_private:
            return None
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
        try:
            literal: IPAddress | None = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None:
            if refusal(literal):
                raise WebhookUrlNotAllowed(REFUSED)
            return [str(literal)]
        try:
            async with asyncio.timeout(RESOLVE_TIMEOUT_S):
                found = [ipaddress.ip_address(a) for a in await self._resolve(host, port)]
        except (OSError, UnicodeError, ValueError, TimeoutError):
            found = []
        if not found or any(refusal(ip) for ip in found):
            raise WebhookUrlNotAllowed(REFUSED)
        return [str(ip) for ip in found]
