"""The OTLP exporter of each signal (traces, metrics, logs), chosen one way: the protocol from
`OTEL_EXPORTER_OTLP_<SIGNAL>_PROTOCOL`, else `OTEL_EXPORTER_OTLP_PROTOCOL`, else `http/protobuf` (the SDK's
default); the SDK's exporter for it, which reads its endpoint, headers, compression and timeout from the same
variables; spans over HTTP through the service's own encoder (otlp_spans.py); and each exporter made to let go of
what a failed export held (otlp_failures.py)."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any, Literal

from .otlp_failures import without_retained_failures

Signal = Literal["TRACES", "METRICS", "LOGS"]

_EXPORTERS: dict[tuple[Signal, bool], tuple[str, str]] = {  # (signal, over gRPC): (module, class)
    ("TRACES", True): ("opentelemetry.exporter.otlp.proto.grpc.trace_exporter", "OTLPSpanExporter"),
    ("TRACES", False): ("market.telemetry.otlp_spans", "OtlpHttpSpanExporter"),
    ("METRICS", True): ("opentelemetry.exporter.otlp.proto.grpc.metric_exporter", "OTLPMetricExporter"),
    ("METRICS", False): ("opentelemetry.exporter.otlp.proto.http.metric_exporter", "OTLPMetricExporter"),
    ("LOGS", True): ("opentelemetry.exporter.otlp.proto.grpc._log_exporter", "OTLPLogExporter"),
    ("LOGS", False): ("opentelemetry.exporter.otlp.proto.http._log_exporter", "OTLPLogExporter"),
}


def endpoint_configured(environ: Mapping[str, str], signal: str) -> bool:
    """Whether an OTLP endpoint is set for `signal` (its own variable or the common one)."""
    return bool(
        environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or environ.get(f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT")
    )


def otlp_exporter(environ: Mapping[str, str], signal: Signal) -> Any:
    """The exporter `environ` asks for; with no endpoint set, the SDK's default (localhost:4317 or :4318).
    Imported only when used: the gRPC exporters pull in grpcio."""
    protocol = environ.get(f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL") or environ.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
    )
    module, name = _EXPORTERS[signal, protocol == "grpc"]
    return without_retained_failures(getattr(importlib.import_module(module), name)())
