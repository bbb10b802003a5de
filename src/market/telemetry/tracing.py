"""The tracer provider: built per worker process at startup, shut down at exit.

Honours the standard variables: OTEL_SDK_DISABLED, OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES,
OTEL_TRACES_SAMPLER(_ARG) (read by the SDK), OTEL_EXPORTER_OTLP_ENDPOINT / _PROTOCOL / _HEADERS / _TIMEOUT.
With no endpoint, nothing is exported and nothing fails.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

from market import __version__
from market.config import Settings

from . import names
from .drops import CountingBatchSpanProcessor


def build_resource(settings: Settings) -> Resource:
    """service.*, deployment.environment.name, merged with OTEL_RESOURCE_ATTRIBUTES (which the SDK reads)."""
    return Resource.create(
        {
            names.SERVICE_NAME: settings.telemetry.service_name,
            names.SERVICE_VERSION: __version__,
            names.SERVICE_INSTANCE_ID: str(uuid.uuid4()),
            names.DEPLOYMENT_ENVIRONMENT: settings.sentry.environment,
        }
    )


def otlp_span_exporter(environ: Mapping[str, str]) -> SpanExporter | None:
    """The OTLP exporter the environment asks for, or None when no endpoint is configured."""
    if not (environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")):
        return None
    protocol = environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
    )
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        return GrpcExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

    return HttpExporter()


def build_tracer_provider(
    settings: Settings, environ: Mapping[str, str] | None = None, resource: Resource | None = None
) -> TracerProvider:
    environ = settings.telemetry.otel_environ() if environ is None else environ
    exporter = otlp_span_exporter(environ)
    sampler = None  # the SDK's: OTEL_TRACES_SAMPLER(_ARG), default parent-based always-on
    if exporter is None and not settings.telemetry.console and not environ.get("OTEL_TRACES_SAMPLER"):
        # Nothing would receive the spans: do not record them (~100 us of CPU per request). Trace ids are
        # still issued, so `traceresponse`, problem bodies, logs and Sentry keep their references.
        sampler = ALWAYS_OFF
    provider = TracerProvider(resource=resource or build_resource(settings), sampler=sampler)
    if exporter is not None:
        provider.add_span_processor(CountingBatchSpanProcessor(exporter))  # drops are counted
    if settings.telemetry.console:
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    return provider
