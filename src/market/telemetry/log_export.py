"""Optional export of log records over OTLP (`OTEL_LOGS_EXPORTER=otlp` with an OTLP endpoint), next to the
JSON lines on stdout. Records emitted inside a span carry its trace and span ids."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource

from .otlp_exporters import endpoint_configured, otlp_exporter


def otlp_logs_wanted(environ: Mapping[str, str]) -> bool:
    return (
        endpoint_configured(environ, "LOGS")
        and environ.get("OTEL_LOGS_EXPORTER", "none").strip().lower() == "otlp"
    )


def install_log_export(resource: Resource, environ: Mapping[str, str]) -> LoggerProvider | None:
    """Attach an OTLP log handler to the root logger when asked for; returns its provider (to shut down)."""
    if not otlp_logs_wanted(environ):
        return None
    exporter = otlp_exporter(environ, "LOGS")
    provider = LoggerProvider(resource=resource)
    provider.add_log_record_processor(BatchLogRecordProcessor(exporter))
    logging.getLogger().addHandler(LoggingHandler(level=logging.INFO, logger_provider=provider))
    return provider
