"""Optional export of log records over OTLP (`OTEL_LOGS_EXPORTER=otlp` with an OTLP endpoint), next to the
JSON lines on stdout. Records emitted inside a span carry its trace and span ids."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource


def otlp_logs_wanted(environ: Mapping[str, str]) -> bool:
    endpoint = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT")
    return bool(endpoint) and environ.get("OTEL_LOGS_EXPORTER", "none").strip().lower() == "otlp"


def install_log_export(resource: Resource, environ: Mapping[str, str]) -> LoggerProvider | None:
    """Attach an OTLP log handler to the root logger when asked for; returns its provider (to shut down)."""
    if not otlp_logs_wanted(environ):
        return None
    protocol = environ.get("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL") or environ.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
    )
    from .otlp_failures import without_retained_failures

    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcExporter

        exporter = without_retained_failures(GrpcExporter())
    else:
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpExporter

        exporter = without_retained_failures(HttpExporter())
    provider = LoggerProvider(resource=resource)
    provider.add_log_record_processor(BatchLogRecordProcessor(exporter))
    logging.getLogger().addHandler(LoggingHandler(level=logging.INFO, logger_provider=provider))
    return provider
