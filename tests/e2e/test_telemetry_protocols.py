"""The telemetry contract (docs/TELEMETRY.md) as an SRE receives it: `market serve` exporting over real OTLP
(HTTP/protobuf on both engines, gRPC once) to a stand-in collector, and reporting to a stand-in Sentry
through a real DSN. Every assertion reads decoded protocol payloads, never in-memory exporters.

One buyer journey per server (module fixture) drives every signal; the tests then read what arrived.
Sentry delivers in order from one queue, so once the journey's last event has arrived, every earlier
event has too: counting events (exactly one, or none) is meaningful from then on.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from prometheus_client.openmetrics import parser as openmetrics_parser

from market import __version__
from market.build import release
from market.telemetry import names
from tests.support.live_server import LiveServer, auth, register, serving
from tests.support.servers.telemetry_receivers import (
    OtlpGrpcReceiver,
    OtlpHttpReceiver,
    ReceivedPoint,
    ReceivedSpan,
    SentryReceiver,
    wait_until,
)

from .helpers import assert_problem, create_admin, create_item, trace_id_of, unique_word

SERVER, CLIENT, INTERNAL = 2, 3, 1  # OTLP SpanKind values
UNSET, ERROR = 0, 2  # OTLP status codes
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
CONTRACT_METRICS = [
    names.HTTP_SERVER_REQUEST_DURATION,
    names.ITEM_VIEWS,
    names.SEARCH_QUERIES,
    names.PAYMENT_ATTEMPTS,
    names.PAYMENT_AMOUNT,
    names.CHECKOUT_STARTED,
    names.ORDERS_COMPLETED,
    names.CART_CHANGES,
]
SERVER_SPAN_ATTRIBUTES = {
    names.HTTP_REQUEST_METHOD,
    names.HTTP_ROUTE,
    names.HTTP_RESPONSE_STATUS_CODE,
    names.URL_PATH,
    names.URL_SCHEME,
    names.USER_AGENT_ORIGINAL,
    names.CLIENT_ADDRESS,
    names.SESSION_ID,
}
USER_AGENT = "market-telemetry-e2e/1.0"
POD_NAME = "market-e2e-pod-7"


def telemetry_env(endpoint: str, protocol: str, sentry: SentryReceiver | None) -> dict[str, str]:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        "OTEL_METRIC_EXPORT_INTERVAL": "500",
        "OTEL_TRACES_SAMPLER": "parentbased_always_on",
        "SENTRY_ENVIRONMENT": "test",
        # The environment wins over the code's defaults (a random instance id), as a k8s manifest needs.
        "OTEL_RESOURCE_ATTRIBUTES": f"{names.SERVICE_INSTANCE_ID}={POD_NAME}",
    }
    if sentry is not None:
        env["SENTRY_DSN"] = sentry.dsn
    return env


@dataclass
class Journey:
    """What the journey did: responses by step, and every secret a client sent along the way."""

    server: LiveServer
    otlp: OtlpHttpReceiver
    sentry: SentryReceiver
    responses: dict[str, httpx.Response] = field(default_factory=dict)
    item: dict[str, Any] = field(default_factory=dict)
    buyer: dict[str, str] = field(default_factory=dict)
    secrets: set[str] = field(default_factory=set)

    def trace_of(self, step: str) -> str:
        return trace_id_of(self.responses[step])

    def server_span(self, step: str) -> ReceivedSpan:
        trace_id = self.trace_of(step)
        spans = self.otlp.wait_for_spans(
            lambda spans: any(s.trace_id == trace_id and s.kind == SERVER for s in spans),
            what=f"the server span of {step}",
        )
        (span,) = [s for s in spans if s.trace_id == trace_id and s.kind == SERVER]
        return span


def _checkout(client: httpx.Client, buyer: dict[str, str], item_id: str, token: str) -> httpx.Response:
    assert (
        client.put(f"/api/v1/cart/items/{item_id}", json={"quantity": 1}, headers=auth(buyer)).status_code
        == 200
    )
    return client.post(
        "/api/v1/checkout",
        json={"payment_method": {"type": "card", "token": token}},
        headers={**auth(buyer), "Idempotency-Key": uuid.uuid4().hex},
    )


def run_journey(journey: Journey) -> None:
    """Every request an SRE should be able to find, in an order that ends with a Sentry event."""
    r = journey.responses
    with journey.server.client(headers={"User-Agent": USER_AGENT}) as c:
        seller = register(c, role="seller")
        buyer = journey.buyer = register(c)
        admin = create_admin(journey.server, c)
        for account in (seller, buyer, admin):
            journey.secrets |= {account["email"], account["password"], account["Authorization"].split()[1]}

        # A request carrying every kind of secret, answered with a 500: nothing of it may leave the process.
        cookie = "sid=cookie" + uuid.uuid4().hex
        leaked_email = f"leak-{uuid.uuid4().hex[:8]}@example.com"
        leaked_password = "pw-" + uuid.uuid4().hex
        journey.secrets |= {cookie.partition("=")[2], leaked_email, leaked_password, "tok_visa"}
        r["secrets"] = c.post(
            "/api/v1/admin/test-monitoring",
            params={"email": leaked_email, "password": leaked_password, "card": "tok_visa"},
            json={"kind": "error"},
            headers={**auth(admin), "Cookie": cookie, "X-Card-Token": "tok_visa", "X-Contact": leaked_email},
        )
        assert r["secrets"].status_code == 500, r["secrets"].text

        word = unique_word()
        journey.item = item = create_item(c, seller, title=f"{word} mug", price_cents=1999, stock=50)
        r["list"] = c.get("/api/v1/items")
        r["search"] = c.get("/api/v1/items", params={"q": word})
        r["search_empty"] = c.get("/api/v1/items", params={"q": unique_word()})
        r["view"] = c.get(f"/api/v1/items/{item['id']}")
        r["unknown_item"] = c.get(f"/api/v1/items/{uuid.uuid4()}")
        r["unknown_route"] = c.get(f"/api/v1/no-such-thing/{uuid.uuid4()}")
        for step in ("list", "search", "search_empty", "view"):
            assert r[step].status_code == 200, r[step].text

        r["declined"] = _checkout(c, buyer, item["id"], "tok_chargeDeclined")
        r["paid"] = c.post(  # the cart is kept after a decline
            "/api/v1/checkout",
            json={"payment_method": {"type": "card", "token": "tok_visa"}},
            headers={**auth(buyer), "Idempotency-Key": uuid.uuid4().hex},
        )
        assert r["paid"].status_code == 201 and r["paid"].json()["status"] == "paid", r["paid"].text
        r["processing"] = _checkout(c, buyer, item["id"], "tok_processing")
        assert r["processing"].status_code == 201, r["processing"].text
        r["timeout"] = _checkout(c, buyer, item["id"], "tok_gatewayTimeout")
        assert r["timeout"].status_code == 503, r["timeout"].text
        journey.secrets |= {"tok_chargeDeclined", "tok_processing", "tok_gatewayTimeout"}

        for kind in ("payment_failure", "message", "error"):
            r[kind] = c.post("/api/v1/admin/test-monitoring", json={"kind": kind}, headers=auth(admin))
        assert r["payment_failure"].status_code == 200 and r["message"].status_code == 200
        assert r["error"].status_code == 500
    # The last event sent: once it is here, all earlier ones are (one queue, in order).
    last = trace_id_of(r["error"])
    journey.sentry.wait_for_events(
        lambda events: any(_trace(e) == last for e in events), what="the last event"
    )


def _trace(event: dict[str, Any]) -> str | None:
    return event.get("contexts", {}).get("trace", {}).get("trace_id")


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def journey(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Journey]:
    otlp, sentry = OtlpHttpReceiver().start(), SentryReceiver().start()
    workdir = tmp_path_factory.mktemp(f"telemetry-{request.param}")
    try:
        env = telemetry_env(otlp.endpoint, "http/protobuf", sentry)
        with serving(request.param, workdir, env) as server:
            done = Journey(server, otlp, sentry)
            run_journey(done)
            yield done
    finally:
        otlp.stop()
        sentry.stop()


# --- traces -------------------------------------------------------------------------------------------------


def test_server_spans_are_named_by_route_template_with_every_contract_attribute(journey):
    view = journey.server_span("view")
    assert view.name == "GET /api/v1/items/{item_id}"
    assert set(view.attributes) >= SERVER_SPAN_ATTRIBUTES, view.attributes
    assert view.attributes[names.HTTP_ROUTE] == "/api/v1/items/{item_id}"
    assert view.attributes[names.URL_PATH] == f"/api/v1/items/{journey.item['id']}"
    assert view.attributes[names.HTTP_REQUEST_METHOD] == "GET"
    assert view.attributes[names.HTTP_RESPONSE_STATUS_CODE] == 200
    assert view.attributes[names.URL_SCHEME] == "http"
    assert view.attributes[names.USER_AGENT_ORIGINAL] == USER_AGENT
    assert view.attributes[names.CLIENT_ADDRESS] == "127.0.0.1"
    assert view.attributes[names.SESSION_ID] == journey.responses["view"].headers["x-session-id"]

    paid = journey.server_span("paid")
    assert paid.name == "POST /api/v1/checkout"
    assert paid.attributes[names.ENDUSER_ID] == journey.buyer["id"]
    assert paid.attributes[names.USER_ROLE] == "buyer"

    unknown = journey.server_span("unknown_route")
    assert unknown.name == "GET"
    assert names.HTTP_ROUTE not in unknown.attributes


def test_no_server_span_is_named_after_a_raw_path(journey):
    journey.server_span("error")
    servers = [s for s in journey.otlp.spans() if s.kind == SERVER]
    assert len(servers) >= len(journey.responses)
    for span in servers:
        route = span.attributes.get(names.HTTP_ROUTE)
        method = span.attributes[names.HTTP_REQUEST_METHOD]
        assert span.name == (f"{method} {route}" if route else method), span
        assert not UUID.search(span.name), span.name
        assert route is None or not UUID.search(route), route


def test_database_statements_are_client_spans_in_the_request_trace_with_placeholders(journey):
    view = journey.server_span("view")
    spans = journey.otlp.trace(view.trace_id)
    by_id = {s.span_id: s for s in spans}
    db = [s for s in spans if names.DB_SYSTEM_NAME in s.attributes]
    assert db, spans
    expected_system = "postgresql" if journey.server.engine == "postgresql" else "sqlite"
    # The view reads the item: nothing else (its analytics event is buffered, and written with others in a
    # batch off the request, outside any request's trace).
    operations = sorted(
        (s.attributes[names.DB_OPERATION_NAME], s.attributes[names.DB_QUERY_TEXT]) for s in db
    )
    assert [operation for operation, _ in operations] == ["SELECT"], operations
    # Stable DB conventions: named by the query summary `{operation} {table}`.
    assert sorted(s.name for s in db) == ["SELECT items"], [s.name for s in db]
    for span in db:
        assert span.attributes[names.DB_QUERY_SUMMARY] == span.name
        assert span.name.endswith(" " + span.attributes[names.DB_COLLECTION_NAME])
    for span in db:
        assert span.kind == CLIENT
        assert span.attributes[names.DB_SYSTEM_NAME] == expected_system
        assert span.attributes[names.DB_NAMESPACE]
        ancestor = span
        while ancestor.parent_span_id and ancestor.parent_span_id in by_id:
            ancestor = by_id[ancestor.parent_span_id]
        assert ancestor.span_id == view.span_id, "a DB span outside the request's span tree"
    texts = [s.attributes[names.DB_QUERY_TEXT] for s in db]
    placeholder = "$1" if expected_system == "postgresql" else "?"
    assert any(placeholder in text for text in texts), texts
    assert not any(journey.item["id"] in text for text in texts), "a parameter value in db.query.text"


def test_checkout_has_a_payment_client_span_and_a_business_span_with_its_events(journey):
    order = journey.responses["paid"].json()
    spans = journey.otlp.wait_for_spans(
        lambda spans: any(
            s.name == "checkout.place_order" and s.trace_id == journey.trace_of("paid") for s in spans
        ),
        what="checkout.place_order",
    )
    trace = [s for s in spans if s.trace_id == journey.trace_of("paid")]
    (charge,) = [s for s in trace if s.name == "payment charge"]
    assert charge.kind == CLIENT
    assert charge.attributes[names.PAYMENT_PROVIDER] == "sandbox"
    assert charge.attributes[names.PAYMENT_METHOD] == "card"
    assert charge.attributes[names.PAYMENT_OUTCOME] == "succeeded"
    assert charge.attributes[names.ORDER_ID] == order["id"]
    (place,) = [s for s in trace if s.name == "checkout.place_order"]
    assert place.kind == INTERNAL
    assert place.attributes[names.ORDER_ID] == order["id"]
    assert place.attributes[names.ORDER_TOTAL_CENTS] == order["total_cents"]
    assert place.attributes[names.ORDER_CURRENCY] == "EUR"
    assert place.attributes[names.CART_LINE_COUNT] == 1
    events = {name for s in trace for name, _ in s.events}
    assert {names.EVENT_CHECKOUT_STARTED, names.EVENT_PAYMENT_ATTEMPTED, names.EVENT_ORDER_PAID} <= events

    declined = [s for s in journey.otlp.trace(journey.trace_of("declined")) if s.name == "payment charge"]
    assert [s.attributes[names.PAYMENT_OUTCOME] for s in declined] == ["declined"]


def test_business_span_events_arrive_with_their_attributes(journey):
    """An event's attributes that a span of the batch also carries (the order id, the payment outcome) once
    arrived missing: the direct encoder wrote them under the span's field number, which the collector skips."""
    order = journey.responses["paid"].json()
    spans = journey.otlp.wait_for_spans(
        lambda spans: any(
            s.name == "checkout.place_order" and s.trace_id == journey.trace_of("paid") for s in spans
        ),
        what="checkout.place_order",
    )
    (place,) = [
        s for s in spans if s.name == "checkout.place_order" and s.trace_id == journey.trace_of("paid")
    ]
    assert place.event(names.EVENT_CHECKOUT_STARTED) == {
        names.ORDER_ID: order["id"],
        names.ORDER_TOTAL_CENTS: order["total_cents"],
        names.ORDER_CURRENCY: "EUR",
        names.CART_LINE_COUNT: 1,
    }
    assert place.event(names.EVENT_PAYMENT_ATTEMPTED) == {
        names.ORDER_ID: order["id"],
        names.PAYMENT_OUTCOME: "succeeded",
        names.PAYMENT_METHOD: "card",
    }
    assert place.event(names.EVENT_ORDER_PAID) == {names.ORDER_ID: order["id"]}


def test_a_declined_checkouts_span_carries_the_orders_figures_too(journey):
    declined = journey.trace_of("declined")
    spans = journey.otlp.wait_for_spans(
        lambda spans: any(s.name == "checkout.place_order" and s.trace_id == declined for s in spans),
        what="the declined checkout.place_order",
    )
    (place,) = [s for s in spans if s.name == "checkout.place_order" and s.trace_id == declined]
    order_id = journey.responses["declined"].json()["order_id"]
    assert place.attributes[names.ORDER_ID] == order_id
    assert place.attributes[names.ORDER_CURRENCY] == "EUR"
    assert place.attributes[names.ORDER_TOTAL_CENTS] > 0 and place.attributes[names.CART_LINE_COUNT] == 1


def test_business_events_are_span_events_on_the_request(journey):
    assert journey.server_span("view").event(names.EVENT_ITEM_VIEWED) is not None
    search = journey.server_span("search").event(names.EVENT_SEARCH_PERFORMED)
    assert search is not None and search[names.SEARCH_OUTCOME] == "results"
    empty = journey.server_span("search_empty").event(names.EVENT_SEARCH_PERFORMED)
    assert empty is not None and empty[names.SEARCH_OUTCOME] == "no_results"


def test_a_5xx_is_an_error_span_with_an_exception_event_and_a_4xx_is_not(journey):
    failed = journey.server_span("error")
    assert failed.status_code == ERROR
    exception = failed.event("exception")
    assert exception is not None
    assert exception["exception.type"].endswith("MonitoringTestError")
    assert exception["exception.message"] and exception["exception.stacktrace"]
    assert failed.attributes[names.ERROR_TYPE] == "500"
    timed_out = journey.server_span("timeout")
    assert timed_out.status_code == ERROR and timed_out.event("exception") is not None
    assert timed_out.attributes[names.ERROR_TYPE] == "503"
    for step in ("unknown_item", "unknown_route", "declined"):
        span = journey.server_span(step)
        assert span.status_code == UNSET, (step, span.status_message)
        assert span.event("exception") is None, step
        assert names.ERROR_TYPE not in span.attributes, step


def test_the_gateway_timeout_503_gives_the_reference_in_its_detail(journey):
    response = journey.responses["timeout"]
    body = assert_problem(response, 503)
    assert trace_id_of(response) in body["detail"], body


def test_traceresponse_problem_trace_id_and_server_span_agree(journey):
    for step, status in (("unknown_item", 404), ("unknown_route", 404), ("declined", 402), ("error", 500)):
        response = journey.responses[step]
        body = assert_problem(response, status)
        assert body["trace_id"] == trace_id_of(response) == journey.server_span(step).trace_id
    assert journey.server_span("view").trace_id == trace_id_of(journey.responses["view"])


def test_the_provider_webhook_is_linked_to_the_checkout_trace(journey):
    checkout_trace = journey.trace_of("processing")
    spans = journey.otlp.wait_for_spans(
        lambda spans: any(s.name == "payment.webhook.apply" for s in spans), what="payment.webhook.apply"
    )
    (apply,) = [s for s in spans if s.name == "payment.webhook.apply"]
    assert apply.trace_id != checkout_trace, "a provider event starts a trace of its own"
    assert apply.attributes[names.ORDER_ID] == journey.responses["processing"].json()["id"]
    assert checkout_trace in [trace_id for trace_id, _, _ in apply.links]
    checkout_span_ids = {s.span_id for s in journey.otlp.trace(checkout_trace)}
    assert any(span_id in checkout_span_ids for _, span_id, _ in apply.links)


def test_resource_attributes_name_the_service_instance_and_environment(journey):
    resource = journey.server_span("view").resource
    assert resource[names.SERVICE_NAME] == "market"
    assert resource[names.SERVICE_VERSION] == __version__
    assert resource[names.SERVICE_INSTANCE_ID] == POD_NAME
    assert resource[names.DEPLOYMENT_ENVIRONMENT] == "test"


# --- metrics ------------------------------------------------------------------------------------------------


def _latest(points: list[ReceivedPoint], name: str) -> list[ReceivedPoint]:
    return [p for p in points if p.name == name]


def test_every_contract_metric_is_exported_over_otlp(journey):
    wanted = {spec[0] for spec in CONTRACT_METRICS}

    def complete(points: list[ReceivedPoint]) -> bool:
        seen = {p.name for p in points}
        durations = _latest(points, wanted_duration)
        routes = {p.attributes.get(names.HTTP_ROUTE) for p in durations}
        statuses = {p.attributes.get(names.HTTP_RESPONSE_STATUS_CODE) for p in durations}
        # Wait for the journey's 500 and 503 too: under load they can land one export after the rest.
        return wanted <= seen and "/api/v1/items/{item_id}" in routes and {500, 503} <= statuses

    wanted_duration = names.HTTP_SERVER_REQUEST_DURATION[0]
    points = journey.otlp.wait_for_points(complete, what="every contract metric")
    for name, unit, _ in CONTRACT_METRICS:
        assert {p.unit for p in _latest(points, name)} == {unit}, name
    durations = _latest(points, wanted_duration)
    assert all(p.kind == "histogram" for p in durations)
    for point in durations:
        route = point.attributes.get(names.HTTP_ROUTE)
        assert route is None or not UUID.search(route), route
        assert point.attributes[names.HTTP_REQUEST_METHOD]
        assert point.attributes[names.URL_SCHEME] == "http"
        status = point.attributes[names.HTTP_RESPONSE_STATUS_CODE]
        assert point.attributes.get(names.ERROR_TYPE) == (str(status) if status >= 500 else None), point
    assert {p.attributes[names.HTTP_RESPONSE_STATUS_CODE] for p in durations} >= {200, 500, 503}
    outcomes = {p.attributes.get(names.SEARCH_OUTCOME) for p in _latest(points, names.SEARCH_QUERIES[0])}
    assert outcomes == {"results", "no_results"}
    attempts = {p.attributes.get(names.PAYMENT_OUTCOME) for p in _latest(points, names.PAYMENT_ATTEMPTS[0])}
    assert {"succeeded", "declined"} <= attempts
    assert {p.attributes.get(names.ORDER_CURRENCY) for p in _latest(points, names.ORDERS_COMPLETED[0])} == {
        "EUR"
    }
    assert points[0].resource[names.SERVICE_NAME] == "market"


def test_every_database_operation_is_measured_per_operation_and_table(journey):
    wanted = names.DB_CLIENT_OPERATION_DURATION[0]
    points = journey.otlp.wait_for_points(lambda points: any(p.name == wanted for p in points), what=wanted)
    operations = _latest(points, wanted)
    assert {p.unit for p in operations} == {"s"} and all(p.kind == "histogram" for p in operations)
    expected_system = "postgresql" if journey.server.engine == "postgresql" else "sqlite"
    summaries = {
        (p.attributes[names.DB_OPERATION_NAME], p.attributes.get(names.DB_COLLECTION_NAME))
        for p in operations
    }
    assert {("SELECT", "items"), ("INSERT", "orders"), ("INSERT", "analytics_events")} <= summaries, summaries
    assert {p.attributes[names.DB_SYSTEM_NAME] for p in operations} == {expected_system}


def test_openmetrics_exposition_links_the_duration_histogram_and_payment_attempts_to_traces(journey):
    with journey.server.client() as c:
        response = c.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
        plain = c.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/openmetrics-text; version=1.0.0")
    text = response.text
    assert text.endswith("# EOF\n")
    families = {f.name: f for f in openmetrics_parser.text_string_to_metric_families(text)}  # validates it
    traced = {journey.trace_of(step) for step in journey.responses}
    duration = families["http_server_request_duration_seconds"]
    linked = {s.exemplar.labels["trace_id"] for s in duration.samples if s.exemplar is not None}
    assert all(len(trace_id) == 32 for trace_id in linked), linked
    assert linked & traced, "no exemplar links a request of the journey to its trace"
    attempts = families["market_payment_attempts"]
    paid = [s for s in attempts.samples if s.labels.get("market_payment_outcome") == "succeeded"]
    # The succeeded attempt's exemplar names a trace that reached the collector: one click away.
    (exemplar,) = [s.exemplar for s in paid if s.exemplar is not None]
    assert journey.otlp.trace(exemplar.labels["trace_id"]), exemplar
    assert any(s.name == "market_payment_attempts_created" for s in attempts.samples)
    (target,) = families["target"].samples
    assert target.labels["service_instance_id"] == POD_NAME and target.labels["service_name"] == "market"
    assert "process_cpu_seconds" in families and "process_resident_memory_bytes" in families
    # Zero series for known label sets: the first rejection, of any reason, moves increase().
    rejected = {
        s.labels["market_webhook_rejection_reason"]: s.value
        for s in families["market_webhook_rejected"].samples
        if s.name.endswith("_total")
    }
    assert set(rejected) >= {"missing_signature", "malformed", "stale_signature", "bad_signature"}
    # The Prometheus text format, as before: no exemplars, no _created, no EOF.
    assert plain.headers["content-type"].startswith("text/plain; version=0.0.4")
    lines = plain.text.splitlines()
    assert "# EOF" not in lines and "trace_id=" not in plain.text
    assert not [line for line in lines if re.match(r"^\w+_created[{ ]", line)]
    assert "target_info{" in plain.text


# --- Sentry -------------------------------------------------------------------------------------------------


def test_a_500_is_exactly_one_sentry_event_on_the_otel_trace(journey):
    response = journey.responses["error"]
    body = response.json()
    events = journey.sentry.events_of_trace(trace_id_of(response))
    assert len(events) == 1, events
    (event,) = events
    assert body["trace_id"] == trace_id_of(response) == journey.server_span("error").trace_id
    assert body["sentry_event_id"] == event["event_id"]
    assert event["level"] == "error"
    assert event["user"] == {"id": journey.server_span("error").attributes[names.ENDUSER_ID], "role": "admin"}
    assert event["tags"]["http.route"] == "/api/v1/admin/test-monitoring"
    assert event["tags"]["http.request.method"] == "POST"
    assert event["environment"] == "test"
    # The release names the build: the package version and the commit of this checkout.
    assert event["release"] == release() and event["release"].startswith(f"market@{__version__}+")
    assert event["transaction"] == "POST /api/v1/admin/test-monitoring"
    assert event.get("transaction_info", {}).get("source") == "route"
    values = event["exception"]["values"]
    assert values[-1]["type"] == "MonitoringTestError"


def test_the_message_kind_sends_one_info_event(journey):
    response = journey.responses["message"]
    events = journey.sentry.events_of_trace(trace_id_of(response))
    assert len(events) == 1, events
    assert events[0]["level"] == "info"
    assert events[0]["event_id"] == response.json()["sentry_event_id"]
    assert "exception" not in events[0]


def test_expected_outcomes_send_nothing_to_sentry_and_a_gateway_timeout_does(journey):
    for step in ("declined", "unknown_item", "unknown_route", "view", "payment_failure"):
        assert journey.sentry.events_of_trace(journey.trace_of(step)) == [], step
    (timeout,) = journey.sentry.events_of_trace(journey.trace_of("timeout"))
    assert timeout["tags"]["http.route"] == "/api/v1/checkout"
    assert timeout["transaction"] == "POST /api/v1/checkout"
    assert timeout["user"]["role"] == "buyer" and "email" not in timeout["user"]
    # Every event the journey caused, and nothing else: the four 5xx/messages above.
    expected = {journey.trace_of(step) for step in ("secrets", "timeout", "message", "error")}
    assert sorted(_trace(e) for e in journey.sentry.events()) == sorted(expected)


# --- secrets ------------------------------------------------------------------------------------------------


def test_no_secret_reaches_any_span_metric_or_sentry_envelope(journey):
    journey.server_span("error")  # spans of the whole journey are in
    payloads = journey.otlp.raw_payloads() + journey.sentry.raw_payloads()
    assert journey.otlp.spans() and journey.sentry.events()
    forms = set()
    for secret in journey.secrets:
        forms |= {secret, secret.replace("@", "%40")}  # an e-mail in a URL is percent-encoded
    leaks = sorted({secret for secret in forms for payload in payloads if secret.encode() in payload})
    assert leaks == [], f"secrets left the process: {leaks}"


# --- OTLP over gRPC -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def grpc_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, OtlpGrpcReceiver]]:
    receiver = OtlpGrpcReceiver().start()
    workdir = tmp_path_factory.mktemp("telemetry-grpc")
    try:
        with serving("sqlite", workdir, telemetry_env(receiver.endpoint, "grpc", None)) as server:
            yield server, receiver
    finally:
        receiver.stop()


def test_over_grpc_spans_and_metrics_arrive_with_the_same_contract(grpc_server):
    server, receiver = grpc_server
    with server.client(headers={"User-Agent": USER_AGENT}) as c:
        seller = register(c, role="seller")
        item = create_item(c, seller)
        view = c.get(f"/api/v1/items/{item['id']}")
        unknown = c.get("/api/v1/no-such-thing")
    assert view.status_code == 200 and unknown.status_code == 404
    trace_id = trace_id_of(view)
    spans = receiver.wait_for_spans(
        lambda spans: any(s.trace_id == trace_id_of(unknown) for s in spans), what="the journey's spans"
    )
    (server_span,) = [s for s in spans if s.trace_id == trace_id and s.kind == SERVER]
    assert server_span.name == "GET /api/v1/items/{item_id}"
    assert set(server_span.attributes) >= SERVER_SPAN_ATTRIBUTES
    db = [s for s in spans if s.trace_id == trace_id and names.DB_SYSTEM_NAME in s.attributes]
    assert db and all(s.kind == CLIENT and s.attributes[names.DB_SYSTEM_NAME] == "sqlite" for s in db)
    assert server_span.event(names.EVENT_ITEM_VIEWED) is not None
    (unknown_span,) = [s for s in spans if s.trace_id == trace_id_of(unknown)]
    assert unknown_span.name == "GET" and unknown_span.status_code == UNSET
    assert server_span.resource[names.DEPLOYMENT_ENVIRONMENT] == "test"
    assert server_span.resource[names.SERVICE_VERSION] == __version__

    def has_view_metrics(points: list[ReceivedPoint]) -> bool:
        routes = {
            p.attributes.get(names.HTTP_ROUTE) for p in _latest(points, names.HTTP_SERVER_REQUEST_DURATION[0])
        }
        return "/api/v1/items/{item_id}" in routes and bool(_latest(points, names.ITEM_VIEWS[0]))

    points = receiver.wait_for_points(has_view_metrics, what="metrics over gRPC")
    assert {p.unit for p in _latest(points, names.HTTP_SERVER_REQUEST_DURATION[0])} == {"s"}
    assert max(p.value for p in _latest(points, names.ITEM_VIEWS[0])) >= 1
    wait_until(lambda: receiver.attempts >= 2, what="both signals")


# --- optional OTLP log export -------------------------------------------------------------------------------


def test_log_lines_are_exported_over_otlp_when_asked_with_the_request_trace(tmp_path):
    receiver = OtlpHttpReceiver().start()
    env = {**telemetry_env(receiver.endpoint, "http/protobuf", None), "OTEL_LOGS_EXPORTER": "otlp"}
    env["OTEL_BLRP_SCHEDULE_DELAY"] = "200"
    try:
        with serving("sqlite", tmp_path, env) as server, server.client() as c:
            response = c.get("/api/v1/items", params={"limit": 1})
            trace_id = trace_id_of(response)

            def access_line_arrived() -> bool:
                return any(
                    r["trace_id"] == trace_id and "GET /api/v1/items" in str(r["body"])
                    for r in receiver.log_records()
                )

            wait_until(access_line_arrived, what="the access log record over OTLP")
    finally:
        receiver.stop()


def test_with_no_collector_openmetrics_exemplars_still_name_the_requests_trace_ids(tmp_path):
    """The embedded default records no span (nothing would receive it), yet each request has a trace id, in
    its `traceresponse`, log line and problem body: the duration histogram's exemplars name those."""
    # The suites sample every request (tests/conftest.py); this is the embedded default's no sampler at all.
    with serving("sqlite", tmp_path, {"OTEL_TRACES_SAMPLER": ""}) as server, server.client() as c:
        traced = {trace_id_of(c.get("/api/v1/items")) for _ in range(3)}
        traced.add(trace_id_of(c.get("/api/v1/no-such-route")))
        response = c.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    families = {f.name: f for f in openmetrics_parser.text_string_to_metric_families(response.text)}
    duration = families["http_server_request_duration_seconds"]
    linked = {s.exemplar.labels["trace_id"] for s in duration.samples if s.exemplar is not None}
    assert linked & traced, (linked, traced)  # the others: the readiness checks of the start
    assert all(re.fullmatch(r"[0-9a-f]{32}", trace_id) for trace_id in linked), linked
