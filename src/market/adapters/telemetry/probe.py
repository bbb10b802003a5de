"""The synthetic availability probe: every MARKET_PROBE_INTERVAL the service requests its own public URL
(MARKET_PROBE_URL, by default `/health/ready` on its bind address) and records what an outside client saw —
`market_probe_checks_total{market_probe_outcome}`, `market_probe_duration_seconds` and `market_probe_success`
(the newest probe, 1 or 0). A request-based SLI cannot see an outage nobody is sending requests into; the
probe sends them, so the time-based availability SLI (`market:availability:probe_up`, infra/prometheus/rules.yaml)
reads down while the service cannot answer, traffic or not. When the whole process is gone the probe is gone
too: then the scrape fails (`up == 0`) and the same rule counts the time as down.

Background work only: nothing here runs on the request path. Success is a 2xx within the timeout; a redirect,
any other status, a refused connection or a timeout is a failure."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import httpx

from market.domain.redaction import safe_url
from market.telemetry import names
from market.telemetry.metrics import Instruments

log = logging.getLogger(__name__)

MAX_TIMEOUT_S = 5.0
USER_AGENT = "market-availability-probe/1"


def probe_timeout(interval_s: float) -> float:
    """A probe gives up after the interval or 5 s, whichever is shorter: probes never pile up."""
    return min(MAX_TIMEOUT_S, max(interval_s, 0.1))


class AvailabilityProbe:
    """Requests `url` every `interval_s` seconds and records the outcome in `instruments`."""

    def __init__(
        self,
        url: str,
        interval_s: float,
        instruments: Instruments,
        *,
        client: httpx.AsyncClient | None = None,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.url = url
        self.interval_s = interval_s
        self._instruments = instruments
        self._client = client or httpx.AsyncClient(
            timeout=probe_timeout(interval_s),
            follow_redirects=False,
            trust_env=False,  # the service's own address: never through a proxy from the environment
        )
        self._timer = timer
        self._last: bool | None = None

    async def probe_once(self) -> bool:
        """One probe, recorded; True when it succeeded."""
        started = self._timer()
        reason = ""
        try:
            response = await self._client.get(self.url, headers={"user-agent": USER_AGENT})
            ok = 200 <= response.status_code < 300
            reason = f"status {response.status_code}"
        except httpx.HTTPError as error:
            ok = False
            reason = type(error).__name__
        elapsed = max(self._timer() - started, 0.0)
        outcome = {names.PROBE_OUTCOME: "success" if ok else "failure"}
        self._instruments.probe_checks.add(1, outcome)
        self._instruments.probe_duration.record(elapsed, outcome)
        self._instruments.probe_success.set(1 if ok else 0)
        if ok != self._last:
            if not ok:
                log.warning("availability probe failed", extra={"url": safe_url(self.url), "reason": reason})
            elif self._last is not None:
                log.info("availability probe succeeds again", extra={"url": safe_url(self.url)})
        self._last = ok
        return ok

    async def run_forever(self) -> None:
        """Probe every interval (the first one interval after the start: the server listens only then)."""
        try:
            while True:
                await asyncio.sleep(self.interval_s)
                try:
                    await self.probe_once()
                except Exception:
                    log.exception("availability probe could not run; will retry")
        finally:
            await self._client.aclose()
