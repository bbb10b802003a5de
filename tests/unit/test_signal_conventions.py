"""Telemetry conventions that need no server: resource precedence, exporter selection, DB query summaries, the
semconv duration buckets, the release name, and how /metrics merges and renders worker snapshots."""

from __future__ import annotations

import copy
import math

import pytest
from opentelemetry.sdk.resources import Resource
from prometheus_client.exposition import generate_latest as generate_text
from prometheus_client.openmetrics import parser as openmetrics_parser
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.parser import text_string_to_metric_families

from market import __version__
from market.adapters.telemetry.db import summarize
from market.build import release
from market.config import Settings
from market.telemetry import names
from market.telemetry.metrics import DURATION_BUCKETS_S, Instruments, SharedMetricReader, build_meter_provider
from market.telemetry.prometheus import (
    _Families,
    merge,
    render,
    snapshot,
    wants_openmetrics,
    with_known_series,
)
from market.telemetry.tracing import build_resource, build_tracer_provider, chosen_exporters

SEMCONV_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)


def _settings() -> Settings:
    return Settings.from_env({}, dotenv=None)


def test_duration_buckets_are_the_semantic_conventions_advice_plus_the_alert_thresholds():
    """Every advised bound stays (dashboards written against the conventions find their `le`), and 2 s, the
    latency alerts' threshold, is added: histogram_quantile interpolates inside a bucket."""
    assert set(SEMCONV_DURATION_BUCKETS) <= set(DURATION_BUCKETS_S)
    assert sorted(set(DURATION_BUCKETS_S) - set(SEMCONV_DURATION_BUCKETS)) == [2]
    assert list(DURATION_BUCKETS_S) == sorted(DURATION_BUCKETS_S)


def test_otel_resource_attributes_win_over_the_code_defaults():
    environ = {
        "OTEL_RESOURCE_ATTRIBUTES": "service.instance.id=pod-abc,deployment.environment.name=staging,k8s.pod.name=pod-abc",
    }
    resource = build_resource(_settings(), environ)
    assert resource.attributes[names.SERVICE_INSTANCE_ID] == "pod-abc"
    assert resource.attributes[names.DEPLOYMENT_ENVIRONMENT] == "staging"
    assert resource.attributes["k8s.pod.name"] == "pod-abc"
    assert resource.attributes[names.SERVICE_NAME] == "market"
    assert resource.attributes[names.SERVICE_VERSION] == __version__


def test_otel_service_name_wins_over_a_service_name_in_the_resource_attributes():
    environ = {"OTEL_RESOURCE_ATTRIBUTES": "service.name=from-attributes", "OTEL_SERVICE_NAME": "from-name"}
    assert build_resource(_settings(), environ).attributes[names.SERVICE_NAME] == "from-name"


def test_without_the_environment_the_code_defaults_stand():
    resource = build_resource(_settings(), {})
    assert resource.attributes[names.SERVICE_INSTANCE_ID]  # a fresh uuid per process
    assert resource.attributes[names.DEPLOYMENT_ENVIRONMENT] == "production"


@pytest.mark.parametrize(
    ("environ", "console", "expected"),
    [
        ({}, False, set()),
        ({}, True, {"console"}),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, False, {"otlp"}),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, False, {"otlp"}),
        (
            {"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"},
            True,
            set(),
        ),
        ({"OTEL_TRACES_EXPORTER": "console"}, False, {"console"}),
        ({"OTEL_TRACES_EXPORTER": "otlp,console"}, False, {"otlp", "console"}),
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, False, set()),
    ],
)
def test_otel_traces_exporter_is_honoured(environ, console, expected):
    assert chosen_exporters(environ, "OTEL_TRACES_EXPORTER", console=console) == expected


def test_the_metrics_exporter_variable_is_read_for_metrics_only():
    environ = {"OTEL_TRACES_EXPORTER": "console", "OTEL_METRICS_EXPORTER": "none"}
    assert chosen_exporters(environ, "OTEL_METRICS_EXPORTER") == set()
    assert chosen_exporters({"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "x"}, "OTEL_METRICS_EXPORTER") == {"otlp"}


def test_the_console_span_exporter_writes_to_stderr_never_stdout(capsys):
    provider = build_tracer_provider(_settings(), {"OTEL_TRACES_EXPORTER": "console"}, Resource.create({}))
    try:
        with provider.get_tracer("t").start_as_current_span("console-check"):
            pass
    finally:
        provider.shutdown()
    out, err = capsys.readouterr()
    assert out == ""
    assert "console-check" in err


def test_the_console_metric_exporter_writes_to_stderr_never_stdout(capsys):
    provider = build_meter_provider(
        Resource.create({}), SharedMetricReader(), {"OTEL_METRICS_EXPORTER": "console"}
    )
    try:
        provider.get_meter("t").create_counter("console.check").add(1)
    finally:
        provider.shutdown()
    out, err = capsys.readouterr()
    assert out == ""
    assert "console.check" in err


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT id FROM users WHERE email = $1", ("SELECT", "users")),
        ('SELECT "items"."id" FROM "items" WHERE "items"."id" = ?', ("SELECT", "items")),
        ('INSERT INTO "orders" ("id") VALUES ($1)', ("INSERT", "orders")),
        ("UPDATE items SET stock = stock - $1 WHERE id = $2 AND stock >= $1", ("UPDATE", "items")),
        ("DELETE FROM carts WHERE buyer_id = $1", ("DELETE", "carts")),
        ("WITH recent AS (SELECT * FROM orders) SELECT count(*) FROM order_lines", ("SELECT", "order_lines")),
        ("SELECT x FROM (SELECT y FROM z) AS sub", ("SELECT", None)),
        # A common table expression is no table: its name resolves to the first table its own body reads or
        # writes (the CTE names `c`, `r`, `outcome` were the tables of spans and of the per-table DB metric).
        (
            "WITH c AS (INSERT INTO carts (buyer_id) VALUES ($1) RETURNING buyer_id) SELECT buyer_id FROM c",
            ("SELECT", "carts"),
        ),
        (
            "WITH v AS (SELECT a FROM analytics_events), r AS (SELECT v.* FROM v) SELECT * FROM r WHERE n > 1",
            ("SELECT", "analytics_events"),
        ),
        (
            "WITH carts AS (SELECT user_id FROM analytics_events), outcome AS (SELECT * FROM carts) "
            "SELECT count(*) FROM outcome",
            ("SELECT", "analytics_events"),
        ),
        ("WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t) SELECT n FROM t", ("SELECT", None)),
        ("WITH p AS (UPDATE payments SET status = $1) UPDATE orders SET status = $2", ("UPDATE", "orders")),
        ("CREATE INDEX IF NOT EXISTS items_seller_idx ON items (seller_id)", ("CREATE", "items")),
        ("CREATE TABLE IF NOT EXISTS sessions (id text)", ("CREATE", "sessions")),
        ("SELECT 1", ("SELECT", None)),
        ("BEGIN", ("BEGIN", None)),
        ("", ("QUERY", None)),
    ],
)
def test_query_summaries_name_the_operation_and_the_table(sql, expected):
    assert summarize(sql) == expected


def test_the_release_is_the_version_and_the_build_commit():
    assert release("market@custom", "abc") == "market@custom"
    assert release(None, "0123456789abcdef0123") == f"market@{__version__}+0123456789ab"
    assert release(None, None).startswith(f"market@{__version__}")


def _worker_snapshot(succeeded: int, started_at: list[float]) -> dict:
    reader = SharedMetricReader()
    provider = build_meter_provider(Resource.create({}), reader, {})
    try:
        instruments = Instruments.create(provider.get_meter("t"))
        attributes = {names.PAYMENT_OUTCOME: "succeeded", names.PAYMENT_METHOD: "card"}
        instruments.payment_attempts.add(succeeded, attributes)
        instruments.http_duration.record(
            0.03,
            {
                names.HTTP_REQUEST_METHOD: "GET",
                names.HTTP_ROUTE: "/api/v1/items",
                names.HTTP_RESPONSE_STATUS_CODE: 200,
                names.URL_SCHEME: "http",
            },
        )
        snap = snapshot(reader.get_metrics_data())
    finally:
        provider.shutdown()
    started_at.append(min(snap["market_payment_attempts_total"]["created"].values()))
    return snap


def test_workers_add_up_and_the_earliest_created_time_is_kept():
    started: list[float] = []
    merged = merge([_worker_snapshot(2, started), _worker_snapshot(3, started)])
    family = merged["market_payment_attempts_total"]
    values = {key: value for key, value in family["samples"].items() if "succeeded" in key}
    assert list(values.values()) == [5]
    assert min(family["created"].values()) == min(started)


def test_known_label_sets_start_at_zero_and_every_route_has_zero_5xx_series():
    text = render(merge([_worker_snapshot(1, [])]))
    for outcome in ("declined", "error"):
        assert (
            f'market_payment_attempts_total{{market_payment_method="card",market_payment_outcome="{outcome}"}} 0.0'
            in text
        )
    for status in ("500", "503"):
        assert (
            "http_server_request_duration_seconds_count{"
            f'error_type="{status}",http_request_method="GET",http_response_status_code="{status}",'
            'http_route="/api/v1/items",url_scheme="http"} 0.0'
        ) in text


def _zero_5xx_counts(text: str, route: str, method: str) -> list[str]:
    return [
        line
        for line in text.splitlines()
        if line.startswith("http_server_request_duration_seconds_count{")
        and f'http_route="{route}"' in line
        and f'http_request_method="{method}"' in line
        and line.endswith(" 0.0")
    ]


def test_every_route_the_app_serves_has_zero_5xx_series_before_its_first_request():
    # /api/v1/checkout was never requested: its first 5xx must find a series at zero, with every bucket
    snap = merge([_worker_snapshot(1, [])])
    routes = [("/api/v1/checkout", "POST"), ("/api/v1/items", "GET"), ("/api/v1/items", "POST")]
    text = render(snap, routes=routes)
    for status in ("500", "503"):
        assert (
            "http_server_request_duration_seconds_count{"
            f'error_type="{status}",http_request_method="POST",http_response_status_code="{status}",'
            'http_route="/api/v1/checkout",url_scheme="http"} 0.0'
        ) in text
    assert len(_zero_5xx_counts(text, "/api/v1/checkout", "POST")) == 2
    assert len(_zero_5xx_counts(text, "/api/v1/items", "POST")) == 2
    buckets = [
        line
        for line in text.splitlines()
        if line.startswith("http_server_request_duration_seconds_bucket{")
        and 'http_route="/api/v1/checkout"' in line
        and 'http_response_status_code="503"' in line
    ]
    assert len(buckets) == len(DURATION_BUCKETS_S) + 1 and all(b.endswith(" 0.0") for b in buckets)
    # the route seen keeps its one 200 series; no 200 is made up for the others
    assert text.count('http_response_status_code="200"') == len(DURATION_BUCKETS_S) + 3
    assert 'http_request_method="OPTIONS"' not in text
    om = render(snap, openmetrics=True, routes=routes)
    assert len(_zero_5xx_counts(om, "/api/v1/checkout", "POST")) == 2
    families = [f.name for f in openmetrics_parser.text_string_to_metric_families(om)]  # valid OpenMetrics
    assert len(families) == len(set(families)) and om.count("# EOF") == 1
    # the zero series' text is rendered once and spliced in: the same lines as rendering them as samples
    for openmetrics, spliced in ((False, text), (True, om)):
        whole = generate_text if not openmetrics else generate_openmetrics
        materialized = whole(_Families(with_known_series(copy.deepcopy(snap), routes), None, openmetrics))
        assert sorted(spliced.splitlines()) == sorted(materialized.decode().splitlines())


def _counts(text: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The request-duration `_count` samples of a text exposition, by label set."""
    return {
        tuple(sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "http_server_request_duration_seconds_count"
    }


def test_zero_5xx_series_exist_before_any_request_at_all_and_never_hide_a_real_count():
    routes = [("/api/v1/checkout", "POST")]
    reader = SharedMetricReader()
    provider = build_meter_provider(Resource.create({}), reader, {})
    try:
        instruments = Instruments.create(provider.get_meter("t"))
        fresh = _counts(render(snapshot(reader.get_metrics_data()), routes=routes))
        instruments.http_duration.record(
            0.2,
            {
                names.HTTP_REQUEST_METHOD: "POST",
                names.HTTP_ROUTE: "/api/v1/checkout",
                names.HTTP_RESPONSE_STATUS_CODE: 503,
                names.URL_SCHEME: "http",
                names.ERROR_TYPE: "503",
            },
        )
        after = _counts(render(snapshot(reader.get_metrics_data()), routes=routes))
    finally:
        provider.shutdown()

    def series(status: str) -> tuple[tuple[str, str], ...]:
        labels = {
            "error_type": status,
            "http_request_method": "POST",
            "http_response_status_code": status,
            "http_route": "/api/v1/checkout",
            "url_scheme": "http",
        }
        return tuple(sorted(labels.items()))

    assert fresh == {series("500"): 0.0, series("503"): 0.0}
    assert after == {series("500"): 0.0, series("503"): 1.0}


def test_the_app_answers_no_5xx_status_without_a_zero_series():
    """Every problem type of 500 and above has its zero series (a new 5xx status would appear at 1)."""
    from market.adapters.http import problems
    from market.telemetry.prometheus import ZERO_STATUSES

    statuses = {
        value.status
        for value in [*vars(problems).values(), *getattr(problems, "PROBLEM_TYPES", {}).values()]
        if isinstance(value, problems.ProblemType) and value.status >= 500
    }
    assert statuses and {str(status) for status in statuses} <= set(ZERO_STATUSES)


def test_openmetrics_is_valid_with_created_and_eof_and_the_text_format_has_neither():
    snap = merge([_worker_snapshot(1, [])])
    resource = Resource.create({names.SERVICE_NAME: "market", names.SERVICE_INSTANCE_ID: "pod-1"})
    om = render(snap, openmetrics=True, resource=resource)
    assert om.endswith("# EOF\n")
    families = {f.name: f for f in openmetrics_parser.text_string_to_metric_families(om)}
    assert families["target"].type == "info"
    assert families["target"].samples[0].labels["service_instance_id"] == "pod-1"
    created = [s for s in families["market_payment_attempts"].samples if s.name.endswith("_created")]
    assert created and all(math.isfinite(s.value) and s.value > 1e9 for s in created)
    buckets = [
        s for s in families["http_server_request_duration_seconds"].samples if s.name.endswith("_bucket")
    ]
    assert {s.labels["le"] for s in buckets} >= {"1.0", "2.5", "+Inf"}
    text = render(snap)
    assert "# EOF" not in text and "_created" not in text


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, False),
        ("text/plain;version=0.0.4", False),
        ("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1", True),
        # Prometheus 2.x/3.x
        (
            "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,"
            "text/plain;version=0.0.4;q=0.3,*/*;q=0.2",
            True,
        ),
        ("application/openmetrics-text", True),
        ("Application/OpenMetrics-Text; Version=1.0.0", True),
        ("text/plain;q=1, application/openmetrics-text;q=0.1", False),  # ranked below the text format
        ("application/openmetrics-text;q=0", False),  # not acceptable
        ("*/*;q=0.9, application/openmetrics-text;q=0.5", False),
        ("text/plain, application/openmetrics-text", True),  # a tie: the richer format
        ("application/openmetrics-text;q=oops", False),
    ],
)
def test_content_negotiation(accept, expected):
    assert wants_openmetrics(accept) is expected
