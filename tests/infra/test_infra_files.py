"""The operator's kit under infra/: every file parses, the pieces point at each other (ports, hosts, mounts,
probes), the rules pass promtool, and every metric a rule or a dashboard uses is one the service exports —
derived from market.telemetry.names through the same prometheus_name() that renders GET /metrics."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from opentelemetry.metrics import Counter, Histogram
from opentelemetry.sdk.resources import Resource

from market.telemetry import names
from market.telemetry.metrics import DURATION_BUCKETS_S, Instruments, SharedMetricReader, build_meter_provider
from market.telemetry.prometheus import prometheus_name, snapshot

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
RULES = INFRA / "prometheus" / "rules.yaml"
RULES_TEST = INFRA / "prometheus" / "rules_test.yaml"
PROMETHEUS_CONFIG = INFRA / "prometheus" / "prometheus.yml"
COLLECTOR = INFRA / "otel-collector.yaml"
COMPOSE = INFRA / "compose.yaml"
ALERTMANAGER = INFRA / "alertmanager" / "alertmanager.yml"
TEMPO = INFRA / "tempo.yaml"
GRAFANA = INFRA / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
K8S = INFRA / "k8s"
MONITORING_DOC = REPO / "docs" / "MONITORING-SETUP.md"
DOCKERFILE = REPO / "Dockerfile"

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (Debian: apt-get install prometheus; CI installs it)"
)


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def load_all_yaml(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]


# --- What the service exports -------------------------------------------------------------------------------

# The kind of each instrument decides its Prometheus name (_total, _bucket/_sum/_count). The instruments the
# request path records are checked against the real exposition below; the backup service sets the last-success
# gauge, and the business gauges are refreshed from the analytics reports.
HISTOGRAMS = {
    names.HTTP_SERVER_REQUEST_DURATION[0],
    names.DB_CLIENT_OPERATION_DURATION[0],
    names.PAYMENT_AMOUNT[0],
    names.PROBE_DURATION[0],
}
GAUGES = {
    names.PROBE_SUCCESS[0],
    names.BACKUP_LAST_SUCCESS[0],
    names.FUNNEL_SESSIONS[0],
    names.CART_ABANDONMENT_RATE[0],
    names.SEARCH_SUCCESS_RATE[0],
    names.SESSION_DURATION[0],
    names.REFUNDS_STUCK[0],
}


def metric_specs() -> list[tuple[str, str, str]]:
    """Every (name, unit, description) declared in names.py."""
    return [
        value
        for value in vars(names).values()
        if isinstance(value, tuple) and len(value) == 3 and all(isinstance(part, str) for part in value)
    ]


def kind_of(otel_name: str) -> str:
    if otel_name in HISTOGRAMS:
        return "histogram"
    if otel_name in GAUGES:
        return "gauge"
    return "counter"


def exported_families() -> dict[str, str]:
    """Prometheus family name -> kind, for every metric declared in names.py."""
    return {prometheus_name(name, unit, kind_of(name)): kind_of(name) for name, unit, _ in metric_specs()}


def exported_series_names() -> set[str]:
    series: set[str] = set()
    for family, kind in exported_families().items():
        if kind == "histogram":
            series |= {family + "_bucket", family + "_sum", family + "_count"}
        else:
            series.add(family)
    return series


# The metric attributes of the contract (docs/TELEMETRY.md, Metrics): bounded sets only. Ids, queries and e-mails
# are span attributes, never labels, so a rule grouping by market_order_id fails here.
METRIC_ATTRIBUTES = (
    names.HTTP_REQUEST_METHOD,
    names.HTTP_ROUTE,
    names.HTTP_RESPONSE_STATUS_CODE,
    names.SEARCH_OUTCOME,
    names.CART_ACTION,
    names.ORDER_CURRENCY,
    names.PAYMENT_OUTCOME,
    names.PAYMENT_METHOD,
    names.WEBHOOK_DIRECTION,
    names.WEBHOOK_OUTCOME,
    names.WEBHOOK_REJECTION_REASON,
    names.BACKUP_OUTCOME,
    names.TELEMETRY_SIGNAL,
    names.PROBE_OUTCOME,
    names.FUNNEL_STEP,
    names.STATISTIC,
    names.URL_SCHEME,
    names.ERROR_TYPE,
    names.DB_SYSTEM_NAME,
    names.DB_OPERATION_NAME,
    names.DB_COLLECTION_NAME,
    names.DB_NAMESPACE,
)


def exported_label_names() -> set[str]:
    """Metric attributes as /metrics spells label names (dots become underscores), plus what Prometheus adds."""
    return {attribute.replace(".", "_") for attribute in METRIC_ATTRIBUTES} | {"job", "instance", "le"}


def test_every_metric_spec_has_a_known_kind() -> None:
    specs = {name for name, _, _ in metric_specs()}
    assert names.HTTP_SERVER_REQUEST_DURATION[0] in specs
    assert specs >= HISTOGRAMS | GAUGES


def test_derived_names_match_what_the_request_path_really_exports() -> None:
    """Record one value on every instrument the service builds; /metrics must name them as derived here."""
    reader = SharedMetricReader()
    provider = build_meter_provider(Resource.create({}), reader, environ={})
    try:
        instruments = Instruments.create(provider.get_meter("test"))
        for field in instruments.__dataclass_fields__:
            instrument = getattr(instruments, field)
            if isinstance(instrument, Histogram):
                instrument.record(1)
            elif isinstance(instrument, Counter):
                instrument.add(1)
        real = snapshot(reader.get_metrics_data())
    finally:
        provider.shutdown()
    derived = exported_families()
    assert real, "no metric collected"
    for family, data in real.items():
        assert family in derived, f"{family} is exported but not derivable from names.py"
        assert data["type"] == derived[family], (
            f"{family}: exported as {data['type']}, derived {derived[family]}"
        )


# --- PromQL: which metrics and labels an expression uses -------------------------------------------------------

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"' + r"|'(?:[^'\\]|\\.)*'")
_MATCHERS = re.compile(r"\{([^{}]*)\}")
_MATCHER_LABEL = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^()]*)\)")
_RANGE = re.compile(r"\[[^\]]*\]")
_IDENTIFIER = re.compile(r"(?<![\w:.$])([A-Za-z_:][A-Za-z0-9_:]*)\b(?!\s*\()")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "by", "without", "on", "ignoring"}
_GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__range": "1h", "$__interval": "1m"}

# Not the service's: Prometheus' own series and the collector's internal metrics (telemetry health).
EXTERNAL_METRICS = {
    "up",
    "ALERTS",
    "otelcol_exporter_send_failed_spans_total",
    "otelcol_exporter_send_failed_metric_points_total",
    "otelcol_exporter_enqueue_failed_spans_total",
    "otelcol_exporter_sent_spans_total",
    "otelcol_exporter_queue_size",
    "otelcol_exporter_queue_capacity",
    "otelcol_receiver_accepted_spans_total",
    "otelcol_receiver_refused_spans_total",
    "otelcol_receiver_refused_metric_points_total",
}
EXTERNAL_LABELS = {"alertname", "alertstate", "severity", "service", "exporter", "receiver", "exported_job"}


def promql_parts(expr: str) -> tuple[set[str], set[str]]:
    """(metric or recorded-series names, label names) that a PromQL expression refers to."""
    text = _STRING.sub('""', expr)
    labels: set[str] = set()
    for block in _MATCHERS.findall(text):
        labels |= set(_MATCHER_LABEL.findall(block))
    text = _MATCHERS.sub(" ", text)
    for group in _GROUPING.findall(text):
        labels |= {label.strip() for label in group.split(",") if label.strip()}
    text = _GROUPING.sub(" ", text)
    text = _RANGE.sub(" ", text)
    metrics = {name for name in _IDENTIFIER.findall(text) if name not in _KEYWORDS}
    return metrics, labels


def test_promql_parts_reads_metrics_and_labels() -> None:
    metrics, labels = promql_parts(
        'sum by (http_route, le) (rate(http_server_request_duration_seconds_bucket{http_route=~"/a|b"}[5m]))'
        " / ignoring (le) market:x:ratio_rate5m > bool 0.5 and on (job) up offset 5m"
    )
    assert metrics == {"http_server_request_duration_seconds_bucket", "market:x:ratio_rate5m", "up"}
    assert labels == {"http_route", "le", "job"}


# --- Rules ------------------------------------------------------------------------------------------------------


def rule_list() -> list[dict[str, Any]]:
    return [rule for group in load_yaml(RULES)["groups"] for rule in group["rules"]]


def alerts() -> list[dict[str, Any]]:
    return [rule for rule in rule_list() if "alert" in rule]


def recorded_names() -> set[str]:
    return {rule["record"] for rule in rule_list() if "record" in rule}


@needs_promtool
def test_promtool_check_rules() -> None:
    result = subprocess.run([PROMTOOL, "check", "rules", str(RULES)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
@pytest.mark.timeout(300)  # about 30 s of CPU; several times that on a busy shared machine
def test_promtool_test_rules() -> None:
    result = subprocess.run(
        [PROMTOOL, "test", "rules", str(RULES_TEST)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_promtool_check_prometheus_config() -> None:
    result = subprocess.run(
        [PROMTOOL, "check", "config", str(PROMETHEUS_CONFIG)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_use_only_exported_metrics_and_labels() -> None:
    known_metrics = exported_series_names() | recorded_names() | EXTERNAL_METRICS
    known_labels = exported_label_names() | EXTERNAL_LABELS
    for rule in rule_list():
        metrics, labels = promql_parts(rule["expr"])
        name = rule.get("alert") or rule.get("record")
        assert metrics, f"{name}: no metric found in its expression"
        assert metrics <= known_metrics, f"{name} uses unknown metrics {sorted(metrics - known_metrics)}"
        assert labels <= known_labels, f"{name} uses unknown labels {sorted(labels - known_labels)}"


def test_every_ratio_is_guarded_against_zero_traffic() -> None:
    """A ratio divides by (denominator > 0): no requests give no sample, never NaN."""
    for rule in rule_list():
        if "record" in rule and "/" in rule["expr"]:
            assert re.search(r"/\s*\(.*>\s*0\)\s*$", rule["expr"], re.S), rule["record"]


def test_every_alert_has_severity_for_summary_description_and_runbook() -> None:
    found = alerts()
    assert len(found) >= 8
    for rule in found:
        name = rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        assert re.fullmatch(r"\d+[smh]", rule.get("for", "")), f"{name} needs a `for:`"
        annotations = rule["annotations"]
        assert annotations["description"].strip(), name
        assert annotations["summary"].strip(), name
        if "absent" not in rule["expr"]:  # an absence has no value worth printing
            assert "$value" in annotations["summary"], f"{name}: the summary should carry the value"


def test_the_issue_s_alerts_exist_with_their_thresholds() -> None:
    by_name = {rule["alert"]: rule for rule in alerts()}
    first = {name: rule["expr"].strip().splitlines()[0] for name, rule in by_name.items()}
    assert first["MarketHighErrorRate"].endswith("> 0.05")
    assert first["MarketPaymentFailures"] == "market:payment_system_failures_per_attempt:ratio_rate5m > 0.10"
    assert first["MarketSlowRoute"].endswith("> 2")
    assert by_name["MarketSlowRoute"]["labels"]["severity"] == "warning"
    assert first["MarketWebhookFailures"].endswith("> 0.01")
    assert "26 * 3600" in by_name["MarketBackupTooOld"]["expr"]
    assert "absent" in by_name["MarketBackupMetricMissing"]["expr"]
    fast, slow = by_name["MarketErrorBudgetBurnFast"]["expr"], by_name["MarketErrorBudgetBurnSlow"]["expr"]
    assert "ratio_rate1h > (14.4 * 0.001)" in fast and "ratio_rate5m > (14.4 * 0.001)" in fast
    assert "ratio_rate6h > (6 * 0.001)" in slow and "ratio_rate30m > (6 * 0.001)" in slow
    # Pages only for what needs a human now (README "Which alerts page, and why").
    for name in ("MarketHighErrorRate", "MarketPaymentFailures", "MarketDown", "MarketErrorBudgetBurnFast"):
        assert by_name[name]["labels"]["severity"] == "critical", name
    for name in (
        "MarketWebhookFailures",
        "MarketBackupTooOld",
        "MarketBackupMetricMissing",
        "MarketSlowRoute",
    ):
        assert by_name[name]["labels"]["severity"] == "warning", name
    # Evidence: the rate alerts need a minimum volume in their window, as the in-app rules do.
    assert (
        ">= 20" in by_name["MarketHighErrorRate"]["expr"] and ">= 3" in by_name["MarketHighErrorRate"]["expr"]
    )
    assert ">= 10" in by_name["MarketPaymentFailures"]["expr"]
    assert ">= 20" in by_name["MarketWebhookFailures"]["expr"]
    assert ">= 20" in by_name["MarketSlowRoute"]["expr"]


def test_every_latency_alert_threshold_is_a_bucket_bound() -> None:
    """A quantile read from a histogram is interpolated inside the bucket that holds it: with no bound at the
    threshold, "p95 > 2 s" fires while most requests took less than 2 s (p95 in (1, 2.5] reads 1 + 0.95 x 1.5).
    So each threshold compared with a recorded quantile is one of the service's duration bounds."""
    quantiles = {
        rule["record"] for rule in rule_list() if "record" in rule and "histogram_quantile" in rule["expr"]
    }
    compared: dict[str, float] = {}
    for rule in alerts():
        for series, threshold in re.findall(
            r"([A-Za-z_:][A-Za-z0-9_:]*)(?:\{[^}]*\})?\s*>\s*([0-9.]+)", rule["expr"]
        ):
            if series in quantiles:
                compared[rule["alert"]] = float(threshold)
    assert {"MarketSlowRoute", "MarketSlowDatabaseQueries"} <= compared.keys()
    for alert, threshold in compared.items():
        assert threshold in DURATION_BUCKETS_S, (
            f"{alert}: {threshold} s is no bucket bound of {DURATION_BUCKETS_S}"
        )


def test_the_required_recording_rules_exist() -> None:
    recorded = recorded_names()
    for name in (
        "market:http_errors_per_request:ratio_rate5m",
        "market_route:http_server_request_duration_seconds:p95_5m",
        "market:payment_success_per_attempt:ratio_rate5m",
        "market:search_results_per_query:ratio_rate5m",
        "market_db_operation:db_client_operation_duration_seconds:p95_5m",
    ):
        assert name in recorded


def test_every_alert_is_shown_firing_and_quiet_in_rules_test() -> None:
    tests = load_yaml(RULES_TEST)["tests"]
    fires: set[str] = set()
    quiet: set[str] = set()
    for case in tests:
        for check in case.get("alert_rule_test", []):
            (fires if check.get("exp_alerts") else quiet).add(check["alertname"])
    names_ = {rule["alert"] for rule in alerts()}
    assert names_ - fires == set(), "alerts never shown firing"
    assert names_ - quiet == set(), "alerts never shown quiet"
    zero = [case for case in tests if "zero traffic" in case["name"]]
    assert zero, "no zero-traffic test"


def markdown_anchors(text: str) -> set[str]:
    """GitHub's heading slugs plus explicit id/name anchors."""
    anchors = set(re.findall(r"""<a\s+(?:id|name)=["']([^"']+)["']""", text))
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchors.add(slug)
    return anchors


def test_every_runbook_url_points_at_an_anchor_of_the_monitoring_guide() -> None:
    anchors = markdown_anchors(MONITORING_DOC.read_text(encoding="utf-8"))
    bases = set()
    for rule in alerts():
        url = urlsplit(rule["annotations"]["runbook_url"])
        assert url.path.endswith("/docs/MONITORING-SETUP.md"), rule["alert"]
        assert url.fragment in anchors, f"{rule['alert']}: no #{url.fragment} in {MONITORING_DOC.name}"
        assert url.fragment == rule["alert"].lower(), "one runbook section per alert, named after it"
        bases.add(rule["annotations"]["runbook_url"].split("#")[0])
    assert len(bases) == 1, "one base URL, so one sed can point them at the real repository"


# --- Grafana ----------------------------------------------------------------------------------------------------


def provisioned_datasources() -> dict[str, dict[str, Any]]:
    config = load_yaml(GRAFANA / "provisioning" / "datasources" / "datasources.yaml")
    return {source["uid"]: source for source in config["datasources"]}


def dashboard_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def dashboard_queries() -> Iterator[tuple[str, str]]:
    for path in DASHBOARDS:
        for panel in dashboard_panels(json.loads(path.read_text(encoding="utf-8"))):
            for target in panel.get("targets", []):
                yield f"{path.name}: {panel['title']}", target["expr"]


def grafana_to_promql(expr: str) -> str:
    for variable, value in _GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return re.sub(r"\$\{?\w+\}?", ".*", expr)


def test_datasources_cover_prometheus_tempo_and_jaeger() -> None:
    kinds = {source["type"] for source in provisioned_datasources().values()}
    assert {"prometheus", "tempo", "jaeger"} <= kinds


def test_the_dashboards_cover_red_funnel_payments_webhooks_backups_and_telemetry_health() -> None:
    uids = {path.stem for path in DASHBOARDS}
    assert uids == {
        "market-red",
        "market-funnel",
        "market-payments",
        "market-webhooks",
        "market-backups",
        "market-telemetry-health",
    }
    queries = " ".join(expr for _, expr in dashboard_queries())
    for metric in (
        "market_item_views_total",
        "market_cart_changes_total",
        "market_checkout_started_total",
        "market_orders_completed_total",
        "market_telemetry_dropped_total",
        "market_webhook_deliveries_total",
        "market_webhook_rejected_total",
        "market_backup_runs_total",
        "market_payment_attempts_total",
        "otelcol_exporter_send_failed_spans_total",
    ):
        assert metric in queries, f"no dashboard shows {metric}"


def test_webhook_rejections_never_count_in_an_alert() -> None:
    """Anyone can post an unsigned request: the rejection counter is shown, never alerted on."""
    for group in load_yaml(RULES)["groups"]:
        for rule in group["rules"]:
            metrics, _ = promql_parts(rule["expr"])
            assert "market_webhook_rejected_total" not in metrics, rule.get("alert") or rule.get("record")


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda path: path.name)
def test_dashboard_structure(path: Path) -> None:
    dashboard = json.loads(path.read_text(encoding="utf-8"))
    assert dashboard["uid"] == path.stem and len(dashboard["uid"]) <= 40
    assert dashboard["title"] and isinstance(dashboard["schemaVersion"], int)
    datasources = provisioned_datasources()
    ids = [panel["id"] for panel in dashboard_panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in dashboard_panels(dashboard):
        grid = panel["gridPos"]
        assert {"h", "w", "x", "y"} <= grid.keys() and grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] in datasources, panel["title"]
        assert panel["targets"], f"{panel['title']}: no query"
        for target in panel["targets"]:
            assert target["refId"] and target["expr"].strip(), panel["title"]
            assert target.get("datasource", panel["datasource"])["uid"] in datasources
    for variable in dashboard["templating"]["list"]:
        assert variable["datasource"]["uid"] in datasources, variable["name"]


def test_dashboards_use_only_exported_metrics_labels_and_recorded_series() -> None:
    known_metrics = exported_series_names() | recorded_names() | EXTERNAL_METRICS
    known_labels = exported_label_names() | EXTERNAL_LABELS
    for where, expr in dashboard_queries():
        metrics, labels = promql_parts(grafana_to_promql(expr))
        assert metrics, f"{where}: no metric in {expr}"
        assert metrics <= known_metrics, f"{where} uses unknown metrics {sorted(metrics - known_metrics)}"
        assert labels <= known_labels, f"{where} uses unknown labels {sorted(labels - known_labels)}"
    for path in DASHBOARDS:
        for variable in json.loads(path.read_text(encoding="utf-8"))["templating"]["list"]:
            metric, label = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", variable["definition"]).groups()
            assert metric in exported_series_names() and label in exported_label_names()


@needs_promtool
def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """promtool parses every dashboard query (Grafana's variables replaced by plain values)."""
    rules = [
        {"record": f"dashboard:query_{number}:check", "expr": grafana_to_promql(expr)}
        for number, (_, expr) in enumerate(dashboard_queries())
    ]
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# --- Every YAML and JSON file parses ----------------------------------------------------------------------------

INFRA_FILES = sorted(
    path for path in INFRA.rglob("*") if path.is_file() and path.suffix in {".yaml", ".yml", ".json"}
)


@pytest.mark.parametrize("path", INFRA_FILES, ids=lambda path: str(path.relative_to(INFRA)))
def test_every_infra_file_parses(path: Path) -> None:
    if path.suffix == ".json":
        assert isinstance(json.loads(path.read_text(encoding="utf-8")), dict)
    else:
        assert load_all_yaml(path), f"{path} is empty"


# --- Compose: services and their wiring -------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    return load_yaml(COMPOSE)


def port_of(endpoint: str) -> int:
    return int(endpoint.rsplit(":", 1)[1])


def listening_ports() -> dict[str, set[int]]:
    """Ports each compose service listens on inside the network, from its own configuration."""
    collector = load_yaml(COLLECTOR)
    protocols = collector["receivers"]["otlp"]["protocols"]
    collector_ports = {port_of(protocols["grpc"]["endpoint"]), port_of(protocols["http"]["endpoint"])}
    collector_ports.add(port_of(collector["exporters"]["prometheus"]["endpoint"]))
    for reader in collector["service"]["telemetry"]["metrics"]["readers"]:
        collector_ports.add(reader["pull"]["exporter"]["prometheus"]["port"])
    tempo = load_yaml(TEMPO)
    tempo_ports = {tempo["server"]["http_listen_port"]}
    tempo_ports |= {
        port_of(protocol["endpoint"])
        for protocol in tempo["distributor"]["receivers"]["otlp"]["protocols"].values()
    }
    market_env = compose()["services"]["market"]["environment"]
    return {
        "market": {int(market_env["MARKET_PORT"])},
        "otel-collector": collector_ports,
        "tempo": tempo_ports,
        "jaeger": {4317, 4318, 16686},  # the all-in-one image's defaults
        "prometheus": {9090},
        "alertmanager": {9093},
        "grafana": {3000},
        "postgres": {5432},
        "redis": {6379},
        "balancer": {int(line.split(":")[-1]) for line in haproxy_lines() if line.startswith("bind ")},
    }


HAPROXY_CONFIG = INFRA / "haproxy" / "haproxy.cfg"


def haproxy_lines() -> list[str]:
    lines = [
        line.split("#", 1)[0].strip() for line in HAPROXY_CONFIG.read_text(encoding="utf-8").splitlines()
    ]
    return [line for line in lines if line]


def assert_reachable(url_or_address: str, where: str) -> None:
    address = url_or_address if "//" in url_or_address else f"//{url_or_address}"
    parts = urlsplit(address)
    ports = listening_ports()
    assert parts.hostname in ports, f"{where}: {parts.hostname} is not a compose service"
    assert parts.port in ports[parts.hostname], f"{where}: {parts.hostname} does not listen on {parts.port}"


def test_compose_has_the_whole_stack() -> None:
    services = compose()["services"]
    assert {
        "market",
        "balancer",
        "redis",
        "postgres",
        "otel-collector",
        "jaeger",
        "tempo",
        "prometheus",
        "alertmanager",
        "grafana",
    } <= services.keys()


def test_compose_publishes_each_ui_and_endpoint() -> None:
    services = compose()["services"]
    expected = {
        "balancer": 8000,
        "grafana": 3000,
        "prometheus": 9090,
        "alertmanager": 9093,
        "jaeger": 16686,
        "tempo": 3200,
        "otel-collector": 4318,
    }
    for service, port in expected.items():
        container_ports = {int(str(mapping).rsplit(":", 1)[1]) for mapping in services[service]["ports"]}
        assert port in container_ports, f"{service} does not publish {port}"
        assert port in listening_ports()[service], f"{service} is not configured to listen on {port}"


def test_market_in_compose_talks_to_postgres_and_the_collector() -> None:
    market = compose()["services"]["market"]
    env = market["environment"]
    assert market["build"]["context"] == ".."
    assert (COMPOSE.parent / market["build"]["context"] / market["build"]["dockerfile"]).is_file()
    assert urlsplit(env["MARKET_DATABASE_URL"]).hostname == "postgres"
    assert_reachable(env["MARKET_DATABASE_URL"].replace("postgresql://", "//"), "MARKET_DATABASE_URL")
    endpoint = env["OTEL_EXPORTER_OTLP_ENDPOINT"]
    assert_reachable(endpoint, "OTEL_EXPORTER_OTLP_ENDPOINT")
    http_receiver = load_yaml(COLLECTOR)["receivers"]["otlp"]["protocols"]["http"]["endpoint"]
    assert urlsplit(endpoint).port == port_of(http_receiver), (
        "OTLP/HTTP goes to the collector's HTTP receiver"
    )
    assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"
    assert env["OTEL_SERVICE_NAME"] == "market"
    for variable in ("SENTRY_DSN", "SENTRY_ENVIRONMENT", "SENTRY_RELEASE"):
        assert variable in env
    assert market["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "otel-collector" in market["depends_on"]


def test_compose_dependencies_follow_the_data() -> None:
    services = compose()["services"]

    def depends(service: str) -> set[str]:
        return set(services[service].get("depends_on", []))

    assert {"jaeger", "tempo"} <= depends("otel-collector")
    assert {"market", "otel-collector", "alertmanager"} <= depends("prometheus")
    assert {"prometheus", "tempo", "jaeger"} <= depends("grafana")
    for name in services:
        assert depends(name) <= services.keys(), name
    assert "healthcheck" in services["postgres"]


def test_compose_bind_mounts_exist_and_match_what_the_configs_expect() -> None:
    services = compose()["services"]
    targets: dict[str, dict[str, str]] = {}
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source, target = volume.split(":")[:2]
            targets.setdefault(name, {})[target] = source
            if source.startswith("."):
                assert (COMPOSE.parent / source).exists(), f"{name}: {source} does not exist"
    assert targets["prometheus"]["/etc/prometheus/prometheus.yml"] == "./prometheus/prometheus.yml"
    assert targets["prometheus"]["/etc/prometheus/rules.yaml"] == "./prometheus/rules.yaml"
    assert load_yaml(PROMETHEUS_CONFIG)["rule_files"] == ["rules.yaml"]
    assert targets["otel-collector"]["/etc/otelcol-contrib/config.yaml"] == "./otel-collector.yaml"
    assert targets["tempo"]["/etc/tempo.yaml"] == "./tempo.yaml"
    provider = load_yaml(GRAFANA / "provisioning" / "dashboards" / "dashboards.yaml")["providers"][0]
    assert targets["grafana"][provider["options"]["path"]] == "./grafana/dashboards"
    assert targets["grafana"]["/etc/grafana/provisioning"] == "./grafana/provisioning"
    # Alertmanager's secret files are written by compose configs; its templates are mounted.
    manager = load_yaml(ALERTMANAGER)
    config_targets = {config["target"] for config in services["alertmanager"]["configs"]}
    assert manager["global"]["slack_api_url_file"] in config_targets
    assert manager["global"]["smtp_auth_password_file"] in config_targets
    for config in services["alertmanager"]["configs"]:
        assert config["source"] in compose()["configs"]
    template_dir = manager["templates"][0].rsplit("/", 1)[0]
    assert targets["alertmanager"][template_dir] == "./alertmanager/templates"


def test_prometheus_scrapes_market_the_collector_and_alerts_to_alertmanager() -> None:
    config = load_yaml(PROMETHEUS_CONFIG)
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["market"]["metrics_path"] == "/metrics"
    assert {"market", "otel-collector", "otel-collector-internal"} <= jobs.keys()
    for job in jobs.values():
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                if not target.startswith("localhost"):
                    assert_reachable(target, f"scrape job {job['job_name']}")
    for manager in config["alerting"]["alertmanagers"]:
        for target in manager["static_configs"][0]["targets"]:
            assert target.startswith("alertmanager:")
            assert_reachable(target, "alerting")


def test_compose_runs_replicas_with_workers_on_redis_behind_a_health_checking_balancer() -> None:
    services = compose()["services"]
    market = services["market"]
    assert market["deploy"]["replicas"] >= 2
    command = market["command"]
    assert command[:2] == ["market", "serve"] and int(command[command.index("--workers") + 1]) >= 2
    assert "ports" not in market, "replicas are reached through the balancer"
    env = market["environment"]
    assert_reachable(env["MARKET_REDIS_URL"].replace("redis://", "//").rsplit("/", 1)[0], "MARKET_REDIS_URL")
    assert market["depends_on"]["redis"]["condition"] == "service_healthy"
    assert urlsplit(env["MARKET_PUBLIC_URL"]).hostname == "balancer"
    assert_reachable(env["MARKET_PUBLIC_URL"], "MARKET_PUBLIC_URL")
    lines = haproxy_lines()
    assert "option httpchk GET /health/ready" in lines and "http-check expect status 200" in lines
    [template] = [line.split() for line in lines if line.startswith("server-template ")]
    assert int(template[2]) >= market["deploy"]["replicas"], "the balancer has fewer slots than replicas"
    assert_reachable(template[3], "the balancer's servers")
    assert "check" in template
    mounted = dict(volume.split(":")[:2][::-1] for volume in services["balancer"]["volumes"])
    assert mounted["/usr/local/etc/haproxy/haproxy.cfg"] == "./haproxy/haproxy.cfg"


def test_haproxy_accepts_the_balancer_configuration_when_installed() -> None:
    haproxy = shutil.which("haproxy") or ("/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None)
    if haproxy is None:
        pytest.skip("haproxy not installed (Debian: apt-get install haproxy; CI installs it)")
    result = subprocess.run([haproxy, "-c", "-f", str(HAPROXY_CONFIG)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_scrapes_each_market_replica_not_the_balancer() -> None:
    jobs = {job["job_name"]: job for job in load_yaml(PROMETHEUS_CONFIG)["scrape_configs"]}
    [discovery] = jobs["market"]["dns_sd_configs"]
    assert discovery["type"] == "A" and discovery["names"] == ["market"]
    assert_reachable(f"market:{discovery['port']}", "scrape job market")
    assert "static_configs" not in jobs["market"]


def test_grafana_datasources_point_at_compose_services() -> None:
    for source in provisioned_datasources().values():
        assert_reachable(source["url"], f"datasource {source['name']}")


# --- The collector ----------------------------------------------------------------------------------------------


def collector() -> dict[str, Any]:
    return load_yaml(COLLECTOR)


def test_collector_pipelines_reference_defined_components_and_start_with_the_memory_limiter() -> None:
    config = collector()
    pipelines = config["service"]["pipelines"]
    assert {"traces", "metrics"} <= pipelines.keys()
    for name, pipeline in pipelines.items():
        for section in ("receivers", "processors", "exporters"):
            for component in pipeline[section]:
                assert component in config[section], f"{name}: {component} is not defined in {section}"
        assert pipeline["processors"][0] == "memory_limiter", name
        assert pipeline["processors"][-1] == "batch", name
    for extension in config["service"].get("extensions", []):
        assert extension in config["extensions"]


def test_collector_receives_otlp_on_4317_and_4318() -> None:
    protocols = collector()["receivers"]["otlp"]["protocols"]
    assert port_of(protocols["grpc"]["endpoint"]) == 4317
    assert port_of(protocols["http"]["endpoint"]) == 4318


def test_traces_are_scrubbed_then_tail_sampled_then_sent_to_jaeger_and_tempo() -> None:
    config = collector()
    traces = config["service"]["pipelines"]["traces"]
    processors = traces["processors"]
    assert processors.index("attributes/scrub") < processors.index("tail_sampling")
    assert processors.index("transform/scrub") < processors.index("tail_sampling")
    exporters = {name: config["exporters"][name] for name in traces["exporters"]}
    hosts = {urlsplit("//" + exporter["endpoint"]).hostname for exporter in exporters.values()}
    assert hosts == {"jaeger", "tempo"}
    for exporter in exporters.values():
        assert_reachable(exporter["endpoint"], "trace exporter")
    policies = {policy["type"]: policy for policy in config["processors"]["tail_sampling"]["policies"]}
    assert policies["status_code"]["status_code"]["status_codes"] == ["ERROR"]
    assert policies["latency"]["latency"]["threshold_ms"] == 2000
    assert 0 < policies["probabilistic"]["probabilistic"]["sampling_percentage"] < 100
    assert "prometheus" in config["service"]["pipelines"]["metrics"]["exporters"]


def deleted_key_patterns() -> list[re.Pattern[str]]:
    actions = collector()["processors"]["attributes/scrub"]["actions"]
    patterns = [re.compile(action["pattern"]) for action in actions if "pattern" in action]
    keys = [re.compile("^" + re.escape(action["key"]) + "$") for action in actions if "key" in action]
    return patterns + keys


def is_deleted(key: str) -> bool:
    return any(pattern.search(key) for pattern in deleted_key_patterns())


@pytest.mark.parametrize(
    "key",
    [
        "enduser.email",
        "enduser.role",
        "enduser.scope",
        "http.request.header.authorization",
        "http.request.header.cookie",
        "http.response.header.set-cookie",
        "user.email",
        "market.user.email",
        "payment.card_token",
        "card.number",
        "db.password",
        "url.query",
    ],
)
def test_the_collector_deletes_pii_like_keys(key: str) -> None:
    assert is_deleted(key)


def test_the_collector_keeps_every_attribute_of_the_contract() -> None:
    """enduser.id and every name the service emits survive the scrubbing (only look-alikes go)."""
    contract = [
        value
        for key, value in vars(names).items()
        if key.isupper() and isinstance(value, str) and "." in value
    ]
    assert names.ENDUSER_ID in contract
    assert [key for key in contract if is_deleted(key)] == []


def test_the_collector_masks_pii_in_values() -> None:
    statements = [
        statement
        for group in collector()["processors"]["transform/scrub"]["trace_statements"]
        for statement in group["statements"]
    ]
    replacements = [
        (re.compile(pattern), replacement)
        for pattern, replacement in (
            re.search(r'"value", "(.+?)", "(.+?)"\)', statement).groups() for statement in statements
        )
    ]

    def scrub(value: str) -> str:
        for pattern, replacement in replacements:
            value = pattern.sub(replacement, value)
        return value

    assert "ana@example.com" not in scrub("user ana@example.com not found")
    assert "tok_visa" not in scrub("charge with tok_visa failed")
    assert "abc.def" not in scrub("Authorization: Bearer abc.def")
    for harmless in ("/api/v1/items/{item_id}", "card", "succeeded", "GET /api/v1/cart"):
        assert scrub(harmless) == harmless


def test_the_collector_does_not_export_the_scraped_service_twice() -> None:
    config = collector()
    assert "filter/scraped-service" in config["service"]["pipelines"]["metrics"]["processors"]
    condition = config["processors"]["filter/scraped-service"]["metrics"]["metric"][0]
    assert f'== "{compose()["services"]["market"]["environment"]["OTEL_SERVICE_NAME"]}"' in condition
    backup_env = compose()["services"]["backup"]["environment"]
    assert backup_env["OTEL_SERVICE_NAME"] != "market", "the backup job's metrics would be filtered out"


# --- Alertmanager -----------------------------------------------------------------------------------------------


def test_critical_alerts_go_to_slack_and_email() -> None:
    config = load_yaml(ALERTMANAGER)
    receivers = {receiver["name"]: receiver for receiver in config["receivers"]}
    critical = [route for route in config["route"]["routes"] if 'severity = "critical"' in route["matchers"]]
    assert len(critical) == 1
    receiver = receivers[critical[0]["receiver"]]
    assert receiver["slack_configs"] and receiver["email_configs"]
    assert config["route"]["receiver"] in receivers
    assert "slack_api_url" not in config["global"], "secrets belong in files"


def test_alertmanager_config_is_valid_for_amtool_when_installed() -> None:
    amtool = shutil.which("amtool")
    if amtool is None:
        pytest.skip("amtool not installed (Debian: prometheus-alertmanager)")
    result = subprocess.run([amtool, "check-config", str(ALERTMANAGER)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# --- Kubernetes -------------------------------------------------------------------------------------------------


def k8s_resources() -> list[dict[str, Any]]:
    kustomization = load_yaml(K8S / "kustomization.yaml")
    resources: list[dict[str, Any]] = []
    for name in kustomization["resources"]:
        resources += load_all_yaml(K8S / name)
    return resources


def test_k8s_manifests_have_the_expected_kinds() -> None:
    kinds = {(resource["kind"], resource["metadata"]["name"]) for resource in k8s_resources()}
    assert {
        ("Deployment", "market"),
        ("Service", "market"),
        ("ConfigMap", "market-config"),
        ("CronJob", "market-backup"),
        ("PersistentVolumeClaim", "market-backups"),
    } <= kinds
    for resource in k8s_resources():
        assert resource["apiVersion"] and resource["metadata"]["labels"]["app.kubernetes.io/name"] == "market"


def deployment() -> dict[str, Any]:
    return next(
        resource
        for resource in k8s_resources()
        if resource["kind"] == "Deployment" and resource["metadata"]["name"] == "market"
    )


def test_k8s_runs_replicas_with_workers_on_redis_and_scrapes_each_pod() -> None:
    resources = {(r["kind"], r["metadata"]["name"]): r for r in k8s_resources()}
    spec = deployment()["spec"]
    assert spec["replicas"] >= 2
    args = spec["template"]["spec"]["containers"][0]["args"]
    assert args[:2] == ["market", "serve"] and int(args[args.index("--workers") + 1]) >= 2
    config = resources[("ConfigMap", "market-config")]["data"]
    redis_url = urlsplit(config["MARKET_REDIS_URL"])
    redis_service = resources[("Service", redis_url.hostname)]
    redis_pods = resources[("Deployment", redis_url.hostname)]["spec"]["template"]
    assert redis_service["spec"]["selector"].items() <= redis_pods["metadata"]["labels"].items()
    assert redis_url.port == redis_service["spec"]["ports"][0]["port"]
    monitor = resources[("PodMonitor", "market")]["spec"]
    assert monitor["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    [endpoint] = monitor["podMetricsEndpoints"]
    port_names = {port["name"] for port in spec["template"]["spec"]["containers"][0]["ports"]}
    assert endpoint["path"] == "/metrics" and endpoint["port"] in port_names


def test_deployment_probes_resources_and_security() -> None:
    pod = deployment()["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    port_names = {port["name"]: port["containerPort"] for port in container["ports"]}
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["port"] in port_names
    assert container["resources"]["requests"]["cpu"] and container["resources"]["limits"]["memory"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    sources = {next(iter(source)) for source in container["envFrom"]}
    assert sources == {"configMapRef", "secretRef"}
    env = {variable["name"]: variable for variable in container["env"]}
    assert env["MARKET_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == "market-database"
    config = next(resource for resource in k8s_resources() if resource["kind"] == "ConfigMap")
    assert container["envFrom"][0]["configMapRef"]["name"] == config["metadata"]["name"]
    assert config["data"]["OTEL_EXPORTER_OTLP_ENDPOINT"].endswith(":4318")
    assert config["data"]["MARKET_HOST"] == "0.0.0.0"


def test_service_selects_the_deployment_and_targets_its_port() -> None:
    service = next(
        resource
        for resource in k8s_resources()
        if resource["kind"] == "Service" and resource["metadata"]["name"] == "market"
    )
    template = deployment()["spec"]["template"]
    labels = template["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert deployment()["spec"]["selector"]["matchLabels"].items() <= labels.items()
    port_names = {port["name"] for port in template["spec"]["containers"][0]["ports"]}
    assert all(port["targetPort"] in port_names for port in service["spec"]["ports"])
    assert template["metadata"]["annotations"]["prometheus.io/path"] == "/metrics"


def test_the_backup_cronjob_is_kept_and_pushes_to_the_collector() -> None:
    cronjob = next(resource for resource in k8s_resources() if resource["kind"] == "CronJob")
    container = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    env = {variable["name"]: variable.get("value") for variable in container["env"]}
    assert env["OTEL_SERVICE_NAME"] != "market"
    config = next(resource for resource in k8s_resources() if resource["kind"] == "ConfigMap")
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == config["data"]["OTEL_EXPORTER_OTLP_ENDPOINT"]


# --- Dockerfile -------------------------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def test_dockerfile_runs_as_non_root_with_a_healthcheck() -> None:
    instructions = dockerfile_instructions()
    bases = [rest for keyword, rest in instructions if keyword == "FROM"]
    assert bases and all(base.startswith("python:3.11-slim") for base in bases)
    final_stage = instructions[max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM") :]
    users = [rest for keyword, rest in final_stage if keyword == "USER"]
    assert users, "the final stage sets no USER"
    assert users[-1].split(":")[0] not in {"root", "0"}
    healthcheck = [rest for keyword, rest in final_stage if keyword == "HEALTHCHECK"]
    assert healthcheck and "/health/live" in healthcheck[0]
    command = json.loads(next(rest for keyword, rest in final_stage if keyword == "CMD"))
    assert command[:2] == ["market", "serve"] and command[command.index("--host") + 1] == "0.0.0.0"
    assert any(keyword == "RUN" and "-c constraints.txt" in rest for keyword, rest in instructions)


def test_dockerignore_keeps_secrets_and_local_state_out_of_the_image() -> None:
    ignored = {
        line.strip() for line in (REPO / ".dockerignore").read_text().splitlines() if line and line[0] != "#"
    }
    assert {".env", ".venv", "var", ".git"} <= ignored
    copied = " ".join(rest for keyword, rest in dockerfile_instructions() if keyword == "COPY")
    for needed in ("pyproject.toml", "constraints.txt", "src"):
        assert needed in copied and needed not in ignored


# --- The guide --------------------------------------------------------------------------------------------------


def test_the_guide_covers_sentry_the_walkthrough_and_every_alert() -> None:
    text = MONITORING_DOC.read_text(encoding="utf-8")
    for needed in ("SENTRY_DSN", "SENTRY_ENVIRONMENT", "SENTRY_RELEASE", "market users create-admin --email"):
        assert needed in text
    assert "/api/v1/admin/test-monitoring" in text
    for kind in ("error", "slow", "payment_failure", "message"):
        assert f"`t {kind}`" in text, kind
    headings = set(re.findall(r"^### (\w+)$", text, re.M))
    assert {rule["alert"] for rule in alerts()} <= headings


def test_no_python_file_under_src_holds_markup() -> None:
    """Pages are Jinja templates under adapters/http/templates (autoescaped), not strings in Python."""
    markup = re.compile(r"<(html|div|svg|table|form|style)[ >]", re.IGNORECASE)
    offenders = [
        str(path.relative_to(REPO))
        for path in sorted((REPO / "src").rglob("*.py"))
        if markup.search(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []


def test_the_package_data_ships_every_template_and_static_file() -> None:
    """A wheel (and the Docker image, which installs one) holds the pages' templates and stylesheet."""
    package = REPO / "src" / "market"
    patterns = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"][
        "package-data"
    ]["market"]
    shipped = {path for pattern in patterns for path in package.glob(pattern)}
    needed = {
        path
        for folder in ("adapters/http/templates", "adapters/http/static")
        for path in (package / folder).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert needed, "no templates found"
    assert needed <= shipped, sorted(str(p.relative_to(package)) for p in needed - shipped)
