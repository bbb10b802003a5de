"""Each signal's OTLP exporter is chosen one way: its own protocol variable, else the common one, else
http/protobuf; spans over HTTP through the service's encoder; every exporter wrapped so that a failed export
keeps nothing (otlp_failures.py)."""

from __future__ import annotations

import pytest
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogs
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcMetrics
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpans
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogs
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpMetrics

from market.telemetry.otlp_exporters import endpoint_configured, otlp_exporter
from market.telemetry.otlp_failures import TracebackFreeTransport
from market.telemetry.otlp_spans import OtlpHttpSpanExporter

ENDPOINT = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"}
KINDS = {
    "TRACES": (OtlpHttpSpanExporter, GrpcSpans),
    "METRICS": (HttpMetrics, GrpcMetrics),
    "LOGS": (HttpLogs, GrpcLogs),
}


@pytest.mark.parametrize("signal", KINDS)
@pytest.mark.parametrize(
    ("protocols", "grpc"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, True),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, False),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_{}_PROTOCOL": "grpc"}, True),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_{}_PROTOCOL": "http/protobuf"}, False),
    ],
    ids=["default", "common grpc", "common http", "signal's grpc wins", "signal's http wins"],
)
def test_each_signal_takes_its_own_protocol_first(signal, protocols, grpc):
    environ = {**ENDPOINT, **{name.format(signal): value for name, value in protocols.items()}}
    exporter = otlp_exporter(environ, signal)
    try:
        http_kind, grpc_kind = KINDS[signal]
        assert type(exporter) is (grpc_kind if grpc else http_kind)
        if not grpc:  # wrapped: a failed export lets go of its batch
            assert isinstance(exporter._client._transport, TracebackFreeTransport)
    finally:
        exporter.shutdown()


@pytest.mark.parametrize("signal", KINDS)
def test_an_endpoint_is_the_common_one_or_the_signals_own(signal):
    assert not endpoint_configured({}, signal)
    assert not endpoint_configured({"OTEL_EXPORTER_OTLP_ENDPOINT": ""}, signal)
    assert endpoint_configured(ENDPOINT, signal)
    assert endpoint_configured({f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT": "http://127.0.0.1:1"}, signal)
    other = next(name for name in KINDS if name != signal)
    assert not endpoint_configured({f"OTEL_EXPORTER_OTLP_{other}_ENDPOINT": "http://127.0.0.1:1"}, signal)
