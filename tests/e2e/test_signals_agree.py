"""Every number agrees: one scripted traffic mix against `market serve`, scraped every second by a real Prometheus
(Debian's `prometheus`, started here on loopback with a temporary configuration, loading
infra/prometheus/rules.yaml with every group evaluated every second), then the ground truth the script knows is
compared with the service's `/metrics`, the business reports (`GET /admin/analytics/...`), the in-app alert values
(`GET /admin/alerts`), Prometheus' evaluation of every recording rule, and the Grafana panel expressions of
infra/grafana/dashboards/*.json, at one instant.

The mix: searches with and without results (some followed by a view), item views, checkouts paid, declined,
timed out at the gateway (503, outcome `error`; the reconciler is kept away, so they stay errored) and paid
asynchronously through the sandbox's signed provider webhook (an inbound delivery), outbound seller webhooks
that the seller's endpoint refuses (500), unauthenticated provider posts (rejections), and three 500s from the
admin's test switch. Then the server is stopped (SIGSTOP) for a few seconds with no traffic at all: the
availability from outside must count that time as down.

Tolerances, stated once:
- `/metrics`, the reports and the in-app values are exact. The in-app error ratio is read while the test's own
  reads (alerts, reports) add requests: its implied denominator must lie between the requests before the reads
  and all requests.
- Prometheus: windows (5m and longer) are longer than the test, so `rate()`/`increase()` read everything since
  each series' first scrape. Two effects move them away from the truth: extrapolation to the window's ends
  (at most about one scrape interval on each side of a ~60 s span of samples) and the value a series had at its
  first scrape (invisible to `increase()`; counters the service zero-initialises lose nothing, nor do the 5xx
  series of the request duration, at zero for every route from the start: the error count is exact; a 2xx/4xx
  series loses what came within its first second). Counts and ratios must agree within 15 % (+1.5 absolute for
  counts); each pair of checked figures differs by more than that from the alternative definitions (declines
  counted as failures, health checks counted as requests, ...).
- Availability from outside: each second the server is stopped is one evaluation at 0; edges (a scrape timing
  out, the first evaluations before the first scrape) are worth at most 3 evaluations.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from market.ops.alerting.rules import histogram_quantile
from tests.support.live_server import LiveServer, auth, free_port, register, serving
from tests.support.servers.webhook_receiver import WebhookReceiver

from .helpers import assert_problem, create_admin, create_item, unique_word

PROMETHEUS = Path("/usr/bin/prometheus")
REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "infra" / "prometheus" / "rules.yaml"
DASHBOARDS = sorted((REPO / "infra" / "grafana" / "dashboards").glob("*.json"))
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__range": "5m", "$__interval": "1m", "$route": ".*"}
OPERATIONAL = ("/health/", "/metrics")
REL = 0.15
ABS = 1.5
STOP_S = 6

pytestmark = [
    pytest.mark.skipif(
        not PROMETHEUS.exists() and not os.environ.get("CI"),
        reason="Debian's prometheus is not installed (.ci/run installs it)",
    ),
    pytest.mark.timeout(420),
]


# --- Prometheus on loopback ------------------------------------------------------------------------------------


class Prometheus:
    def __init__(self, url: str, process: subprocess.Popen[bytes], log: Path) -> None:
        self.url = url
        self.process = process
        self.log = log

    def query(self, expr: str, at: float) -> list[dict[str, Any]]:
        r = httpx.get(f"{self.url}/api/v1/query", params={"query": expr, "time": f"{at:.3f}"}, timeout=30)
        body = r.json()
        assert r.status_code == 200 and body["status"] == "success", (expr, body)
        return body["data"]["result"]

    def scalar(self, expr: str, at: float) -> float | None:
        result = self.query(expr, at)
        assert len(result) <= 1, (expr, result)
        return float(result[0]["value"][1]) if result else None


def rules_for_the_test(directory: Path) -> Path:
    """rules.yaml with every group evaluated at the global interval (1 s): the long-window group's 5 minutes
    would otherwise outlast the test."""
    rules = yaml.safe_load(RULES.read_text())
    for group in rules["groups"]:
        group.pop("interval", None)
    path = directory / "rules.yaml"
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    return path


@pytest.fixture
def prometheus_for(tmp_path: Path) -> Iterator[Any]:
    started: list[Prometheus] = []

    def start(target: str) -> Prometheus:
        directory = tmp_path / "prometheus"
        directory.mkdir()
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "900ms", "evaluation_interval": "1s"},
            "rule_files": [str(rules_for_the_test(directory))],
            "scrape_configs": [{"job_name": "market", "static_configs": [{"targets": [target]}]}],
        }
        (directory / "prometheus.yml").write_text(yaml.safe_dump(config))
        port = free_port()
        log = directory / "prometheus.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [
                    str(PROMETHEUS),
                    f"--config.file={directory / 'prometheus.yml'}",
                    f"--storage.tsdb.path={directory / 'data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        server = Prometheus(f"http://127.0.0.1:{port}", process, log)
        started.append(server)
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, log.read_text()
            try:
                if httpx.get(f"{server.url}/-/ready", timeout=1).status_code == 200:
                    return server
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)

    yield start
    for server in started:
        server.process.terminate()
        try:
            server.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()
        shutil.rmtree(server.log.parent, ignore_errors=True)  # its TSDB: nothing left behind


# --- ground truth -------------------------------------------------------------------------------------------------


class Tally:
    """Every response the test's client got: (path, status)."""

    def __init__(self) -> None:
        self.responses: list[tuple[str, int]] = []

    def hook(self, response: httpx.Response) -> None:
        self.responses.append((response.request.url.path, response.status_code))

    def api(self) -> list[tuple[str, int]]:
        return [(path, status) for path, status in self.responses if not path.startswith(OPERATIONAL)]


def wait_for(condition: Any, what: str, within_s: float = 30) -> Any:
    deadline = time.monotonic() + within_s
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.2)


def parse_metrics(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def total(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return sum(
        value
        for (sample, sample_labels), value in samples.items()
        if sample == name and set(labels.items()) <= sample_labels
    )


def db_series_total(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, labels: dict[str, str]
) -> float:
    """`name` summed over the series with these values of `labels`' names, an empty value meaning the label is
    absent (as a PromQL matcher means it)."""
    return sum(
        value
        for (sample, sample_labels), value in samples.items()
        if sample == name and all(dict(sample_labels).get(key, "") == want for key, want in labels.items())
    )


def close(measured: float | None, expected: float, rel: float = REL, absolute: float = 0.0) -> bool:
    return measured is not None and abs(measured - expected) <= max(rel * abs(expected), absolute, 1e-9)


# --- the test -----------------------------------------------------------------------------------------------------


@pytest.fixture(params=["postgresql", "sqlite"])
def engine(request: pytest.FixtureRequest) -> str:
    return request.param


def test_report_metrics_alerts_rules_and_panels_agree_with_what_happened(
    engine: str, tmp_path: Path, prometheus_for: Any
) -> None:
    refusing_seller = WebhookReceiver(status=500).start()
    env = {
        "MARKET_PROBE_INTERVAL": "1",
        "MARKET_ALERT_EVAL_INTERVAL": "1",
        "MARKET_BUSINESS_GAUGES_INTERVAL": "1",
        "MARKET_RECONCILE_INTERVAL": "3600",  # gateway timeouts stay `error` until the test ends
        "MARKET_WEBHOOKS_ALLOW_PRIVATE": "1",
        "MARKET_WEBHOOK_RETRY_SCHEDULE": "1h",  # one attempt per delivery within the test
    }
    try:
        with serving(engine, tmp_path, env) as server:
            prometheus = prometheus_for(server.base_url.removeprefix("http://"))
            run_and_compare(server, prometheus, refusing_seller)
    finally:
        refusing_seller.stop()


def run_and_compare(server: LiveServer, prometheus: Prometheus, refusing_seller: WebhookReceiver) -> None:
    tally = Tally()
    client = httpx.Client(base_url=server.base_url, timeout=30, event_hooks={"response": [tally.hook]})
    with client:
        wait_for(
            lambda: prometheus.scalar("market:availability:probe_up", time.time()) == 1,
            "Prometheus sees the service up and probed",
        )
        start = datetime.now(UTC).replace(microsecond=0)
        seen_up_at = time.time()

        # --- setup ------------------------------------------------------------------------------------------------
        admin = create_admin(server, client)
        seller = register(client, role="seller")
        r = client.put("/api/v1/seller/webhook", json={"url": refusing_seller.url}, headers=auth(seller))
        assert r.status_code == 200, r.text
        word = unique_word()
        item = create_item(client, seller, title=f"Enamel {word} mug", stock=1000, price_cents=1500)
        # A (route, status) series is born at its first request: what it holds at its first scrape is invisible to
        # rate(). The catalogue's list exists before the burst of searches below (registrations take seconds).
        assert client.get("/api/v1/items").status_code == 200
        buyers = [register(client) for _ in range(6)]
        sessions = [str(uuid.uuid4()) for _ in buyers]

        def as_buyer(index: int) -> dict[str, str]:
            return {**auth(buyers[index]), "X-Session-Id": sessions[index]}

        def put_in_cart(index: int) -> None:
            r = client.put(f"/api/v1/cart/items/{item['id']}", json={"quantity": 1}, headers=as_buyer(index))
            assert r.status_code == 200, r.text

        def checkout(index: int, token: str) -> httpx.Response:
            return client.post(
                "/api/v1/checkout",
                json={"payment_method": {"type": "card", "token": token}},
                headers={**as_buyer(index), "Idempotency-Key": uuid.uuid4().hex},
            )

        # --- the mix ------------------------------------------------------------------------------------------
        searches = Counter[str]()
        succeeded_searches = 0

        def visitor() -> dict[str, str]:  # a shopper of its own session, signed out
            return {"X-Session-Id": str(uuid.uuid4())}

        for _ in range(3):  # a search with results, then a view: a search success
            session = visitor()
            r = client.get("/api/v1/items", params={"q": word}, headers=session)
            assert len(r.json()["items"]) == 1
            searches["results"] += 1
            succeeded_searches += 1
            assert client.get(f"/api/v1/items/{item['id']}", headers=session).status_code == 200
        for _ in range(3):  # results, but no view or cart add after them: not a success
            r = client.get("/api/v1/items", params={"q": word}, headers=visitor())
            assert len(r.json()["items"]) == 1
            searches["results"] += 1
        for _ in range(2):  # nothing found; a view after a miss is not a success either
            session = visitor()
            r = client.get("/api/v1/items", params={"q": unique_word(12)}, headers=session)
            assert r.json()["items"] == []
            searches["no_results"] += 1
            assert client.get(f"/api/v1/items/{item['id']}", headers=session).status_code == 200
        for _ in range(4):
            assert client.get("/api/v1/items").status_code == 200  # browsing: not a search

        attempts = Counter[str]()
        # buyer 0: three declines (the cart is kept), then three paid orders; no pause before the gateway timeouts
        # below: the route's 500/503 series exist at zero since the server started.
        put_in_cart(0)
        for _ in range(3):
            assert_problem(checkout(0, "tok_chargeDeclined"), 402)
            attempts["declined"] += 1
        for _ in range(3):
            assert checkout(0, "tok_visa").status_code == 201
            attempts["succeeded"] += 1
            put_in_cart(0)
        # buyers 1-4: a gateway timeout each (503: a 5xx, a system failure, `error` until reconciled)
        for index in range(1, 5):
            put_in_cart(index)
            assert_problem(checkout(index, "tok_gatewayTimeout"), 503)
            attempts["error"] += 1
        # buyer 5: paid, then paid later through the sandbox's signed webhook (an inbound delivery)
        put_in_cart(5)
        assert checkout(5, "tok_mastercard").status_code == 201
        attempts["succeeded"] += 1
        put_in_cart(5)
        r = checkout(5, "tok_processing")
        assert r.status_code in (201, 202), r.text
        attempts["succeeded"] += 1  # processing counts as succeeded (the provider confirms it)
        order = r.json()["id"]
        wait_for(
            lambda: client.get(f"/api/v1/orders/{order}", headers=auth(buyers[5])).json()["status"] == "paid",
            "the sandbox's webhook pays the processing order",
        )
        paid_orders = attempts["succeeded"]
        # unauthenticated provider posts: rejections, never deliveries
        rejections = Counter[str]()
        for _ in range(2):
            assert client.post("/api/v1/webhooks/payments", content=b"{}").status_code in (400, 401)
            rejections["missing_signature"] += 1
        r = client.post(
            "/api/v1/webhooks/payments",
            content=b"{}",
            headers={"Market-Signature": f"t={int(time.time())},v1={'0' * 64}"},
        )
        assert r.status_code in (400, 401), r.text
        rejections["bad_signature"] += 1
        # the admin's test switch: three 500s, the route's first requests ever, in a burst (well within one scrape
        # interval). Its zero 500 series was scraped before them: all three count in rate() and increase().
        for _ in range(3):
            r = client.post("/api/v1/admin/test-monitoring", json={"kind": "error"}, headers=auth(admin))
            assert_problem(r, 500)
        # every paid order's seller webhook is attempted once, and refused
        wait_for(lambda: len(refusing_seller.received()) >= paid_orders, "the seller webhooks are attempted")

        # --- an outage nobody is sending requests into ---------------------------------------------------------
        time.sleep(2)
        stopped_at = time.time()
        os.kill(server.process.pid, signal.SIGSTOP)
        try:
            time.sleep(STOP_S)
        finally:
            os.kill(server.process.pid, signal.SIGCONT)
        resumed_at = time.time()
        wait_for(
            lambda: prometheus.scalar('up{job="market"}', time.time()) == 1,
            "scraped again after the stop",
        )
        time.sleep(3)  # several scrapes, rule and in-app evaluations, a business-gauge refresh

        # --- what every source says ------------------------------------------------------------------------
        before_reads = len(tally.api())
        inbound_posts = 1  # the sandbox's webhook for tok_processing: a request the service got, not the test
        errors_5xx = sum(1 for _, status in tally.api() if status >= 500)
        assert errors_5xx == 3 + attempts["error"]

        alerts = {
            a["name"]: a for a in client.get("/api/v1/admin/alerts", headers=auth(admin)).json()["alerts"]
        }
        period = {
            "from": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "to": (datetime.now(UTC) + timedelta(seconds=2)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        payments = client.get("/api/v1/admin/analytics/payments", params=period, headers=auth(admin)).json()
        search = client.get("/api/v1/admin/analytics/search", params=period, headers=auth(admin)).json()
        metrics = parse_metrics(client.get("/metrics").text)
        time.sleep(2.5)  # Prometheus scrapes what these reads added
        at = time.time()
        after_reads = len(tally.api())
        requests_lo = before_reads + inbound_posts
        requests_hi = after_reads + inbound_posts

        attempts_total = sum(attempts.values())
        truth = {
            "error ratio": errors_5xx / requests_lo,
            "payment success": attempts["succeeded"] / attempts_total,
            "payment not succeeded": (attempts["declined"] + attempts["error"]) / attempts_total,
            "payment system failures": attempts["error"] / attempts_total,
            "search results share": searches["results"] / sum(searches.values()),
            "search success": succeeded_searches / sum(searches.values()),
        }
        # The definitions must be told apart by the tolerance: declines are not system failures, health checks are
        # not requests.
        assert not close(truth["payment system failures"], truth["payment not succeeded"], rel=2 * REL)
        assert not close(truth["search success"], truth["search results share"], rel=2 * REL)

        # 1. /metrics: exact
        for outcome, count in attempts.items():
            assert total(metrics, "market_payment_attempts_total", market_payment_outcome=outcome) == count
        for outcome, count in searches.items():
            assert total(metrics, "market_search_queries_total", market_search_outcome=outcome) == count
        for reason, count in rejections.items():
            assert (
                total(metrics, "market_webhook_rejected_total", market_webhook_rejection_reason=reason)
                == count
            )
        deliveries = {
            (direction, outcome): total(
                metrics,
                "market_webhook_deliveries_total",
                market_webhook_direction=direction,
                market_webhook_outcome=outcome,
            )
            for direction in ("inbound", "outbound")
            for outcome in ("success", "failure")
        }
        assert deliveries == {
            ("inbound", "success"): 1,
            ("inbound", "failure"): 0,
            ("outbound", "success"): 0,
            ("outbound", "failure"): paid_orders,
        }, deliveries
        api_5xx = sum(
            value
            for (name, labels), value in metrics.items()
            if name == "http_server_request_duration_seconds_count"
            and dict(labels)["http_response_status_code"].startswith("5")
            and not dict(labels)["http_route"].startswith(OPERATIONAL)
        )
        assert api_5xx == errors_5xx
        api_requests = sum(
            value
            for (name, labels), value in metrics.items()
            if name == "http_server_request_duration_seconds_count"
            and not dict(labels)["http_route"].startswith(OPERATIONAL)
        )
        assert requests_lo <= api_requests <= requests_hi, (requests_lo, api_requests, requests_hi)
        assert total(metrics, "market_probe_checks_total", market_probe_outcome="success") > 0
        assert metrics[("market_search_success_rate", frozenset())] == pytest.approx(truth["search success"])

        # 2. the reports: exact
        assert (payments["attempts"], payments["succeeded"], payments["declined"], payments["errored"]) == (
            attempts_total,
            attempts["succeeded"],
            attempts["declined"],
            attempts["error"],
        ), payments
        assert payments["success_rate"] == pytest.approx(truth["payment success"])
        assert (search["searches"], search["no_results"]) == (sum(searches.values()), searches["no_results"])
        assert search["success_rate"] == pytest.approx(truth["search success"])

        # 3. the in-app alert values: exact (the error ratio over requests counted up to its evaluation)
        high = alerts["high_error_rate"]["value"]
        assert high is not None and requests_lo - 1 <= errors_5xx / high <= requests_hi + 1, (
            high,
            requests_lo,
        )
        assert alerts["payment_failures"]["value"] == pytest.approx(truth["payment system failures"])
        assert alerts["webhook_failures"]["value"] is None  # 7 deliveries: below the 20 the rule needs

        # 4. Prometheus: every recording rule
        recorded = [
            rule["record"]
            for group in yaml.safe_load(RULES.read_text())["groups"]
            for rule in group["rules"]
            if "record" in rule
        ]
        checked: set[str] = set()

        def expect(name: str, value: float | None, expected: float | None, **kwargs: Any) -> None:
            checked.add(name)
            if expected is None:
                assert value is None, (name, value)
                return
            assert close(value, expected, **kwargs), (name, value, expected)

        # What the first scrape of each series already held is invisible to rate() and increase() (a burst of
        # declines before the first scrape of the 402 series, say); Prometheus keeps that first value (a counter's
        # minimum), so what rate() can see of the ground truth is known exactly.
        def unseen(selector: str) -> float:
            value = prometheus.scalar(
                f"sum(min_over_time(http_server_request_duration_seconds_count{{{selector}}}[5m]))", at
            )
            return value or 0.0

        api = 'http_route!~"/health/.*|/metrics"'

        def increase_bounds(selector: str) -> tuple[float, float]:
            """What sum(increase(...[5m])) may show: each series' rise between its first and last samples, which
            Prometheus stretches toward the window's edges by at most 1.1 average sample intervals on each side
            (the scrape gap of the stop below widens that interval; its extrapolation is not a fixed share)."""
            lowest = highest = 0.0
            query = f"http_server_request_duration_seconds_count{{{selector}}}[5m]"
            for series in prometheus.query(query, at):
                values = [float(value) for _, value in series["values"]]
                if len(values) > 1:
                    rise = values[-1] - values[0]  # one process throughout: no counter resets
                    lowest += rise
                    highest += rise * (1 + 2.2 / (len(values) - 1))
            return lowest, highest

        def visible_buckets(route: str | None) -> dict[float, float]:
            """/metrics' buckets less what each series held at its first scrape (as for the counts)."""
            selector = "" if route is None else f'{{http_route="{route}"}}'
            first = {
                (math.inf if r["metric"]["le"] == "+Inf" else float(r["metric"]["le"])): float(r["value"][1])
                for r in prometheus.query(
                    f"sum by (le) (min_over_time(http_server_request_duration_seconds_bucket{selector}[5m]))",
                    at,
                )
            }
            return {
                bound: count - first.get(bound, 0.0) for bound, count in route_buckets(metrics, route).items()
            }

        visible_errors = errors_5xx - unseen(api + ', http_response_status_code=~"5.."')
        visible_requests = requests_hi - unseen(api)
        assert visible_errors == errors_5xx, (
            "every 5xx series exists at zero before its route's first request: no error is unseen",
            prometheus.query(
                'min_over_time(http_server_request_duration_seconds_count{http_response_status_code=~"5.."}[5m])',
                at,
            ),
        )
        visible_ratio = visible_errors / visible_requests
        for window in ("5m", "30m", "1h", "2h", "6h", "1d", "3d", "30d"):
            name = f"market:http_errors_per_request:ratio_rate{window}"
            expect(name, prometheus.scalar(name, at), visible_ratio, rel=REL)
        remaining = prometheus.scalar("market:http_errors_per_request:error_budget_remaining_30d", at)
        expect(
            "market:http_errors_per_request:error_budget_remaining_30d",
            remaining,
            1 - 1000 * visible_ratio,
            rel=REL,
        )
        expect(
            "market:payment_attempts:rate5m",
            (prometheus.scalar("market:payment_attempts:rate5m", at) or 0) * 300,
            attempts_total,
            absolute=ABS,
        )
        for name, key in (
            ("market:payment_success_per_attempt:ratio_rate5m", "payment success"),
            ("market:payment_failures_per_attempt:ratio_rate5m", "payment not succeeded"),
            ("market:payment_system_failures_per_attempt:ratio_rate5m", "payment system failures"),
            ("market:search_results_per_query:ratio_rate5m", "search results share"),
        ):
            expect(name, prometheus.scalar(name, at), truth[key])
        expect(
            "market:search_success:ratio_24h",
            prometheus.scalar("market:search_success:ratio_24h", at),
            truth["search success"],
            rel=1e-9,
        )
        webhooks = {
            r["metric"]["market_webhook_direction"]: float(r["value"][1])
            for r in prometheus.query("market_direction:webhook_failures_per_delivery:ratio_rate15m", at)
        }
        checked.add("market_direction:webhook_failures_per_delivery:ratio_rate15m")
        assert webhooks == {"inbound": 0.0, "outbound": 1.0}, webhooks
        expect(
            "market:backup_last_success:age_seconds",
            prometheus.scalar("market:backup_last_success:age_seconds", at),
            None,
        )

        # per route: the rate times the window is the count; p95 lies in or next to the bucket /metrics puts it in
        checkouts = sum(1 for path, _ in tally.api() if path == "/api/v1/checkout")
        by_route = {
            r["metric"]["http_route"]: float(r["value"][1])
            for r in prometheus.query("market_route:http_server_requests:rate5m", at)
        }
        checked.add("market_route:http_server_requests:rate5m")
        visible_checkouts = checkouts - unseen('http_route="/api/v1/checkout"')
        assert close(by_route["/api/v1/checkout"] * 300, visible_checkouts, absolute=ABS), (
            by_route,
            visible_checkouts,
        )
        assert "/health/ready" in by_route  # the probe's requests are traffic, just not SLI traffic
        route_p95 = {
            r["metric"]["http_route"]: float(r["value"][1])
            for r in prometheus.query("market_route:http_server_request_duration_seconds:p95_5m", at)
        }
        checked.add("market_route:http_server_request_duration_seconds:p95_5m")
        assert {"/api/v1/checkout", "/api/v1/items"} <= set(route_p95), route_p95
        for route in ("/api/v1/checkout", "/api/v1/items"):
            assert_near_bucket(route_p95[route], visible_buckets(route))
        overall = prometheus.scalar("market:http_server_request_duration_seconds:p95_5m", at)
        checked.add("market:http_server_request_duration_seconds:p95_5m")
        assert_near_bucket(overall, visible_buckets(None))
        db_rate = prometheus.query("market_db_operation:db_client_operations:rate5m", at)
        db_p95 = prometheus.query("market_db_operation:db_client_operation_duration_seconds:p95_5m", at)
        checked |= {
            "market_db_operation:db_client_operations:rate5m",
            "market_db_operation:db_client_operation_duration_seconds:p95_5m",
        }
        assert db_rate and db_p95
        busiest = max(db_rate, key=lambda r: float(r["value"][1]))
        # Exactly the busiest series: a statement on no table (`SELECT 1`, a report's SET LOCAL) has no
        # db_collection_name, and the same operation on every table must not be summed with it.
        labels = {
            "db_collection_name": "",
            **{k: v for k, v in busiest["metric"].items() if k.startswith("db_")},
        }
        db_count = db_series_total(metrics, "db_client_operation_duration_seconds_count", labels)
        # Less what the series held at their first scrape, as for the requests: the busiest operation can be one
        # that runs in a burst at start-up (a report's SET LOCAL, run by the business gauges' first refresh).
        selector = ",".join(f'{name}="{value}"' for name, value in labels.items())
        db_unseen = prometheus.scalar(
            f"sum(min_over_time(db_client_operation_duration_seconds_count{{{selector}}}[5m]))", at
        )
        visible_db = db_count - (db_unseen or 0.0)
        # /metrics was read 2.5 s before `at`: statements run in between (a business-gauge refresh, whose reports
        # each run a SET LOCAL) reached Prometheus but not that read. What it may have seen lies between the two
        # reads, so the upper bound is a read made now.
        db_count_now = db_series_total(
            parse_metrics(client.get("/metrics").text), "db_client_operation_duration_seconds_count", labels
        )
        seen_db = float(busiest["value"][1]) * 300
        assert visible_db * 0.75 <= seen_db <= (db_count_now - (db_unseen or 0.0)) * 1.25, (
            busiest,
            db_count,
            db_count_now,
            db_unseen,
        )

        # availability from outside: the stop counted as down, traffic or not
        # Every evaluation while the process was stopped reads 0 (no scrape answers: nothing vouches for the
        # service), none before or after it does, except the first ones, before Prometheus' first scrape.
        samples = [
            (float(t), float(v))
            for t, v in prometheus.query("market:availability:probe_up[5m]", at)[0]["values"]
        ]
        # (the first failed scrape ends up to 1.9 s after the stop: 1 s interval, 0.9 s timeout)
        during = [v for t, v in samples if stopped_at + 2.5 <= t <= resumed_at - 0.3]
        assert during and set(during) == {0.0}, during
        before_first_scrape = sum(1 for t, v in samples if t < seen_up_at and v == 0)
        in_stop = sum(1 for t, _ in samples if stopped_at <= t <= resumed_at)
        covered = len(samples)
        # A probe in flight when the process stopped times out when it resumes (and the next may, while the event
        # loop catches up): failures, honestly seen. Each lowers the probe ratio of the 5 minutes after it.
        failed_probes = total(metrics, "market_probe_checks_total", market_probe_outcome="failure")
        assert failed_probes <= STOP_S, failed_probes  # the ones that resumed late, while the loop caught up
        probe_ratio = prometheus.scalar("market:probe_success_per_check:ratio_rate5m", at)
        checked |= {"market:probe_success_per_check:ratio_rate5m", "market:availability:probe_up"}
        probed = total(metrics, "market_probe_checks_total")
        assert probe_ratio is not None and close(probe_ratio, 1 - failed_probes / probed, rel=0.02)
        expected_availability = 1 - (in_stop + before_first_scrape) / covered
        margin = 3 / covered + (1 - probe_ratio)
        for window in ("5m", "30m", "1h", "2h", "6h", "1d", "3d", "30d"):
            name = f"market:availability:ratio_avg{window}"
            value = prometheus.scalar(name, at)
            checked.add(name)
            assert value is not None and abs(value - expected_availability) <= margin, (
                name,
                value,
                expected_availability,
            )
        budget = prometheus.scalar("market:availability:error_budget_remaining_30d", at)
        checked.add("market:availability:error_budget_remaining_30d")
        assert budget is not None and abs(budget - (1 - 1000 * (1 - expected_availability))) <= 1000 * margin

        assert set(recorded) - checked == set(), "recording rules the test does not compare"

        # alerts: the in-app payment rule is over its threshold, and so is Prometheus' (pending: `for: 5m`)
        pending = {r["metric"]["alertname"] for r in prometheus.query('ALERTS{alertstate="pending"}', at)}
        assert "MarketPaymentFailures" in pending, pending
        assert alerts["payment_failures"]["value"] > alerts["payment_failures"]["threshold"]

        # 5. Grafana: every panel expression evaluates; the ones showing these figures agree
        panels = panel_queries()
        # Every expression evaluates (a ratio over a series that only moved before its first scrape may be NaN:
        # Grafana shows that as it is).
        shown = [prometheus.query(grafana_to_promql(expr), at) for _, expr in panels]

        def panel(title_part: str, expr_part: str) -> list[dict[str, Any]]:
            found = [
                result
                for (where, expr), result in zip(panels, shown, strict=True)
                if title_part in where and expr_part in expr
            ]
            assert len(found) == 1, (title_part, expr_part)
            return found[0]

        def single(result: list[dict[str, Any]]) -> float:
            assert len(result) == 1, result
            return float(result[0]["value"][1])

        assert close(single(panel("Attempts over the range", "increase")), attempts_total, absolute=ABS)
        assert close(single(panel("Declined over the range", "declined")), attempts["declined"], absolute=ABS)
        assert close(single(panel("Errors over the range", "error")), attempts["error"], absolute=ABS)
        assert close(single(panel("Success ratio (5m)", "ratio")), truth["payment success"])
        assert close(single(panel("5xx share (5m, SLI)", "ratio")), visible_ratio)
        assert abs(single(panel("Availability over the range", "probe_up")) - expected_availability) <= margin
        errors_least, errors_most = increase_bounds(api + ', http_response_status_code=~"5.."')
        requests_least, requests_most = increase_bounds(api)
        # Prometheus' samples hold every 5xx (all came before its last scrape) and at most the requests seen
        assert errors_least == visible_errors and requests_least <= visible_requests, (
            errors_least,
            requests_least,
        )
        shown_availability = single(panel("Availability over the range", "increase"))
        assert 1 - errors_most / requests_least <= shown_availability <= 1 - errors_least / requests_most, (
            shown_availability,
            (errors_least, errors_most),
            (requests_least, requests_most),
        )
        assert close(single(panel("Search success", "ratio_24h")), truth["search success"], rel=1e-9)
        delivered = {
            (r["metric"]["market_webhook_direction"], r["metric"]["market_webhook_outcome"]): float(
                r["value"][1]
            )
            for r in panel("Deliveries over the range", "increase")
        }
        assert close(delivered[("outbound", "failure")], paid_orders, absolute=ABS), delivered
        assert close(delivered[("inbound", "success")], 1, absolute=ABS), delivered
        rejected = {
            r["metric"]["market_webhook_rejection_reason"]: float(r["value"][1])
            for r in panel("Rejected provider posts over the range", "increase")
        }
        for reason, count in rejections.items():
            assert close(rejected[reason], count, absolute=ABS), rejected


def route_buckets(
    metrics: dict[tuple[str, frozenset[tuple[str, str]]], float], route: str | None
) -> dict[float, float]:
    buckets: dict[float, float] = {}
    for (name, labels), value in metrics.items():
        label = dict(labels)
        if name != "http_server_request_duration_seconds_bucket":
            continue
        if route is not None and label["http_route"] != route:
            continue
        bound = math.inf if label["le"] == "+Inf" else float(label["le"])
        buckets[bound] = buckets.get(bound, 0.0) + value
    return buckets


FEW_REQUESTS = 20
"""Below this many requests a p95 is the slowest one or two of them."""


def assert_near_bucket(measured: float | None, buckets: dict[float, float]) -> None:
    """Both quantiles interpolate inside `le` buckets: Prometheus' over what it saw increase (extrapolated, without
    what each series held at its first scrape), /metrics' over everything. Near a bound they may land in
    neighbouring buckets, never further apart. Over fewer than FEW_REQUESTS requests, one bucket further: there
    the p95 is decided by a single request, and Prometheus extrapolates each series (status code) over its own
    first and last samples, so one series' slow request weighs more there than in the plain counts (seen: 12
    requests of one route, all under 5 ms in /metrics, Prometheus' p95 15 ms)."""
    expected = histogram_quantile(0.95, buckets)
    assert measured is not None and expected is not None
    bounds = [0.0, *sorted(b for b in buckets if not math.isinf(b)), math.inf]
    index = max(i for i, b in enumerate(bounds) if b <= expected)
    slack = 1 if buckets.get(math.inf, 0.0) >= FEW_REQUESTS else 2
    lower = bounds[max(index - slack, 0)]
    upper = bounds[min(index + 1 + slack, len(bounds) - 1)]
    assert lower - 1e-9 <= measured <= upper + 1e-9, (measured, expected, lower, upper)


def panel_queries() -> list[tuple[str, str]]:
    found = []
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())

        def walk(panels: list[dict[str, Any]], file: str) -> None:
            for p in panels:
                walk(p.get("panels", []), file)
                for target in p.get("targets", []):
                    if target.get("expr"):
                        found.append((f"{file}: {p.get('title')}", target["expr"]))

        walk(dashboard.get("panels", []), path.name)
    return found


def grafana_to_promql(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr


def test_the_prometheus_config_of_the_agreement_test_is_valid(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed")
    result = subprocess.run(
        [promtool, "check", "rules", str(rules_for_the_test(tmp_path))], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
