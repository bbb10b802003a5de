"""The WebhookSender port over httpx: one signed POST per attempt, with its CLIENT span, metric and log line.

- Connects only to the addresses the SSRF guard has just checked (the URL's host is swapped for the address;
  the `Host` header and TLS server name stay the host's, so certificates are verified as usual). No proxies
  from the environment, no kept-alive connections (a pooled connection to one address must not carry another
  host's request), no redirects (a 3xx is a failed attempt).
- 10 s for the whole attempt, name resolution included.
- The attempt's span joins the trace where the event was raised (the checkout), and its `traceparent` goes
  out with the request, so a receiver's own traces can hang off ours.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime
from urllib.parse import urlsplit

import httpx
from opentelemetry import metrics, trace
from opentelemetry.metrics import Counter
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from market import __version__
from market.application.seller_webhooks import ClaimedDelivery
from market.domain.errors import ValidationFailed
from market.domain.redaction import safe_url
from market.domain.webhooks import AttemptResult
from market.telemetry import names
from market.telemetry.metrics import counter

from .signing import InvalidSecret, signature_headers
from .ssrf import SsrfGuard

log = logging.getLogger(__name__)

ATTEMPT_TIMEOUT_S = 10.0
USER_AGENT = f"market-webhooks/{__version__}"
_W3C = TraceContextTextMapPropagator()


class HttpxWebhookSender:
    def __init__(
        self,
        guard: SsrfGuard,
        *,
        tracer: Tracer | None = None,
        deliveries_counter: Counter | None = None,
        timeout_s: float = ATTEMPT_TIMEOUT_S,
    ) -> None:
        """`tracer` and `deliveries_counter` default to the global providers' (tests pass in-memory ones)."""
        self._guard = guard
        self._timeout_s = timeout_s
        self._tracer = tracer or trace.get_tracer(names.INSTRUMENTATION_SCOPE)
        if deliveries_counter is None:
            deliveries_counter = counter(
                metrics.get_meter(names.INSTRUMENTATION_SCOPE), names.WEBHOOK_DELIVERIES
            )
        self._deliveries = deliveries_counter
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s),
            follow_redirects=False,
            trust_env=False,
            limits=httpx.Limits(max_keepalive_connections=0),
            headers={"user-agent": USER_AGENT},
        )

    async def close(self) -> None:
        await self._client.aclose()

    async def send(self, delivery: ClaimedDelivery, now: datetime) -> AttemptResult:
        assert delivery.endpoint is not None
        url = delivery.endpoint.url
        parts = urlsplit(url)
        attempt = delivery.attempts + 1
        parent = _W3C.extract({"traceparent": delivery.traceparent}) if delivery.traceparent else None
        attributes = {
            names.HTTP_REQUEST_METHOD: "POST",
            names.URL_FULL: safe_url(url),
            names.SERVER_ADDRESS: parts.hostname or "",
            names.SERVER_PORT: parts.port or (443 if parts.scheme.lower() == "https" else 80),
            names.WEBHOOK_DIRECTION: "outbound",
            names.WEBHOOK_EVENT_TYPE: delivery.event_type,
            names.WEBHOOK_DELIVERY_ID: delivery.id,
            names.WEBHOOK_ATTEMPT: attempt,
        }
        with self._tracer.start_as_current_span(
            names.SPAN_WEBHOOK_DELIVER,
            context=parent,
            kind=SpanKind.CLIENT,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            started = time.monotonic()
            status_code, error, error_type = await self._attempt(delivery, now)
            duration_ms = round((time.monotonic() - started) * 1000)
            success = status_code is not None and 200 <= status_code < 300
            outcome = "success" if success else "failure"
            if status_code is not None:
                span.set_attribute(names.HTTP_RESPONSE_STATUS_CODE, status_code)
            span.set_attribute(names.WEBHOOK_OUTCOME, outcome)
            if not success:
                span.set_attribute(names.ERROR_TYPE, error_type or "error")
                span.set_status(Status(StatusCode.ERROR, error))
            self._deliveries.add(1, {names.WEBHOOK_DIRECTION: "outbound", names.WEBHOOK_OUTCOME: outcome})
            log.log(
                logging.INFO if success else logging.WARNING,
                "webhook attempt",
                extra={
                    "webhook_delivery_id": delivery.id,
                    "seller_id": delivery.seller_id,
                    "event_type": delivery.event_type,
                    "attempt": attempt,
                    "url": safe_url(url),
                    "status_code": status_code,
                    "error": error,
                    "duration_ms": duration_ms,
                    "outcome": outcome,
                },
            )
        return AttemptResult(status_code=status_code, error=error, duration_ms=duration_ms)

    async def _attempt(
        self, delivery: ClaimedDelivery, now: datetime
    ) -> tuple[int | None, str | None, str | None]:
        """(status code, error, error.type) of one attempt; never raises for network or receiver trouble."""
        try:
            async with asyncio.timeout(self._timeout_s):
                status = await self._post(delivery, now)
        except TimeoutError:
            return None, f"timed out after {self._timeout_s:g} s", "timeout"
        except httpx.TimeoutException:
            return None, f"timed out after {self._timeout_s:g} s", "timeout"
        except ValidationFailed as exc:  # the SSRF guard, now that DNS may answer differently
            reason = exc.errors[0].message if exc.errors else exc.detail
            return None, f"not sent: {reason}", "address_not_allowed"
        except InvalidSecret as exc:
            return None, f"not sent: {exc}", "invalid_secret"
        except httpx.InvalidURL:  # a host the resolver read (IDNA 2003) but httpx cannot encode (IDNA 2008)
            return None, "not sent: the URL's host name is not valid", "invalid_url"
        except httpx.HTTPError as exc:
            return None, _describe(exc), type(exc).__name__
        if 300 <= status < 400:
            return status, f"HTTP {status}: redirects are not followed", str(status)
        if not 200 <= status < 300:
            return status, f"HTTP {status}", str(status)
        return status, None, None

    async def _post(self, delivery: ClaimedDelivery, now: datetime) -> int:
        assert delivery.endpoint is not None
        body = delivery.payload.encode()  # sent as stored: the signature covers these exact bytes
        headers = {
            "content-type": "application/json",
            **signature_headers(delivery.endpoint.secret, delivery.id, int(now.timestamp()), body),
        }
        _W3C.inject(headers)  # the attempt's span is current: the receiver sees it as the parent
        url = httpx.URL(delivery.endpoint.url)
        addresses = await self._guard.addresses(delivery.endpoint.url)
        if addresses is None:  # unrestricted (development): let httpx resolve and connect
            return await self._post_to(url, headers, body, address=None)
        refused: httpx.ConnectError | None = None
        for address in addresses:  # like happy eyeballs, but only over the checked addresses
            try:
                return await self._post_to(url, headers, body, address=address)
            except httpx.ConnectError as exc:  # nothing was sent: the next address is no duplicate
                refused = exc
        assert refused is not None
        raise refused

    async def _post_to(
        self, url: httpx.URL, headers: dict[str, str], body: bytes, address: str | None
    ) -> int:
        extensions: dict[str, str] = {}
        if address is not None:
            headers = {**headers, "host": url.netloc.decode("ascii")}
            if url.scheme == "https":
                extensions["sni_hostname"] = url.raw_host.decode("ascii")
            url = url.copy_with(host=address)
        request = self._client.build_request(
            "POST", url, headers=headers, content=body, extensions=extensions
        )
        response = await self._client.send(request, stream=True)
        await response.aclose()  # the receiver's body is not ours to read (nor to store)
        return response.status_code


def _describe(exc: httpx.HTTPError) -> str:
    """A short, secret-free reason (httpx messages name the address, never the URL's query)."""
    detail = str(exc).strip()
    kind = {httpx.ConnectError: "connection failed"}.get(type(exc), type(exc).__name__)
    return f"{kind}: {detail}"[:200] if detail else kind
