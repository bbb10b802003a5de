"""The tracer provider: built per worker process at startup, shut down at exit.

Honours the standard variables: OTEL_SDK_DISABLED, OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES (both win over
the code's defaults), OTEL_TRACES_SAMPLER(_ARG) (read by the SDK), OTEL_TRACES_EXPORTER (`otlp`, `console`,
`none`, comma-separated), OTEL_EXPORTER_OTLP_ENDPOINT / _PROTOCOL / _HEADERS / _TIMEOUT.
With no endpoint and no OTEL_TRACES_EXPORTER, nothing is exported and nothing fails. The console exporter
writes to stderr: every stdout line is a JSON log line.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider, sampling
from opentelemetry.sdk.trace.export import (
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    Decision,
    ParentBased,
    ParentBasedTraceIdRatio,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import get_current_span

from market import __version__
from market.config import Settings

from . import names
from .drops import CountingBatchSpanProcessor
from .otlp_exporters import endpoint_configured, otlp_exporter


def build_resource(settings: Settings, environ: Mapping[str, str] | None = None) -> Resource:
    """service.*, deployment.environment.name: the code's defaults, then OTEL_RESOURCE_ATTRIBUTES over them,
    then OTEL_SERVICE_NAME (the standard precedence: the environment wins, so a Kubernetes manifest's
    `service.instance.id=$(POD_NAME)` is what the telemetry carries)."""
    environ = settings.telemetry.otel_environ() if environ is None else environ
    defaults = Resource.create(
        {
            names.SERVICE_NAME: settings.telemetry.service_name,
            names.SERVICE_VERSION: __version__,
            names.SERVICE_INSTANCE_ID: str(uuid.uuid4()),
            names.DEPLOYMENT_ENVIRONMENT: settings.sentry.environment,
        }
    )
    resource = defaults.merge(_detected(environ))
    service_name = environ.get("OTEL_SERVICE_NAME")
    if service_name:
        resource = resource.merge(Resource({names.SERVICE_NAME: service_name}))
    return HashedOnceResource(resource.attributes, resource.schema_url)


class HashedOnceResource(Resource):
    """A resource that computes its hash once. The OTLP encoder groups every exported span by resource, and the
    SDK's hash is a JSON dump of the attributes: ~4 µs per span, twice per request. A resource's attributes
    cannot change, so neither can its hash."""

    def __init__(self, attributes: Any, schema_url: str | None = None) -> None:
        super().__init__(attributes, schema_url)
        self._hash = super().__hash__()

    def __hash__(self) -> int:
        return self._hash


def _detected(environ: Mapping[str, str]) -> Resource:
    """OTEL_RESOURCE_ATTRIBUTES from `environ` (the SDK's detector would read os.environ itself)."""
    attributes: dict[str, str] = {}
    for pair in environ.get("OTEL_RESOURCE_ATTRIBUTES", "").split(","):
        key, sep, value = pair.partition("=")
        if sep and key.strip():
            attributes[key.strip()] = unquote(value.strip())
    return Resource(attributes)


EXPORTERS = frozenset({"otlp", "console", "none"})


def chosen_exporters(environ: Mapping[str, str], variable: str, *, console: bool = False) -> set[str]:
    """What OTEL_TRACES_EXPORTER / OTEL_METRICS_EXPORTER asks for (`otlp`, `console`, `none`, comma-separated;
    unknown names are ignored). Unset: `otlp` when an OTLP endpoint is configured (the embedded default
    exports nothing), plus `console` when MARKET_TELEMETRY_CONSOLE is on."""
    value = environ.get(variable)
    if value is None or not value.strip():
        chosen = set()
        signal = variable.removeprefix("OTEL_").removesuffix("_EXPORTER")  # TRACES, METRICS
        if endpoint_configured(environ, signal):
            chosen.add("otlp")
        if console:
            chosen.add("console")
        return chosen
    chosen = {part.strip().lower() for part in value.split(",")} & EXPORTERS
    return set() if "none" in chosen else chosen


class OneLookParentBased(ParentBased):
    """The SDK's parent-based sampler with its default delegates (the parent's decision stands; a root span asks
    `root`), deciding alike in fewer steps: one look at the parent span instead of three (the SDK's
    `ParentBased` looks it up, then its delegate once more for the parent's trace state), and the SDK's
    `ALWAYS_ON` and `TraceIdRatioBased` roots decided in place. Every span of every request asks."""

    def should_sample(
        self,
        parent_context: Any,
        trace_id: int,
        name: str,
        kind: Any = None,
        attributes: Any = None,
        links: Any = None,
        trace_state: Any = None,
    ) -> SamplingResult:
        parent = get_current_span(parent_context).get_span_context()
        if parent is None or not parent.is_valid:
            root = self._root
            if root is ALWAYS_ON:
                return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes, None)
            if type(root) is TraceIdRatioBased:  # its decision, on the trace id's low 64 bits
                if trace_id & TraceIdRatioBased.TRACE_ID_LIMIT < root.bound:
                    return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes, None)
                return SamplingResult(Decision.DROP, None, None)
            return root.should_sample(parent_context, trace_id, name, kind, attributes, links)
        if parent.trace_flags.sampled:  # remote or local alike: the parent's decision stands
            return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes, parent.trace_state)
        return SamplingResult(Decision.DROP, None, parent.trace_state)


def in_fewer_steps(sampler: Sampler) -> Sampler:
    """`sampler` as a OneLookParentBased when it is one of the SDK's parent-based samplers with the default
    delegates (`parentbased_always_on`, the default, and `parentbased_traceidratio`); any other as it is."""
    if (
        type(sampler) in (ParentBased, ParentBasedTraceIdRatio)
        and sampler._remote_parent_sampled is ALWAYS_ON
        and sampler._local_parent_sampled is ALWAYS_ON
        and sampler._remote_parent_not_sampled is ALWAYS_OFF
        and sampler._local_parent_not_sampled is ALWAYS_OFF
    ):
        return OneLookParentBased(sampler._root)
    return sampler


def build_tracer_provider(
    settings: Settings, environ: Mapping[str, str] | None = None, resource: Resource | None = None
) -> TracerProvider:
    environ = settings.telemetry.otel_environ() if environ is None else environ
    chosen = chosen_exporters(environ, "OTEL_TRACES_EXPORTER", console=settings.telemetry.console)
    exporter: SpanExporter | None = otlp_exporter(environ, "TRACES") if "otlp" in chosen else None
    console = "console" in chosen
    if exporter is None and not console and not environ.get("OTEL_TRACES_SAMPLER"):
        # Nothing would receive the spans: do not record them (~100 us of CPU per request). Trace ids are
        # still issued, so `traceresponse`, problem bodies, logs and Sentry keep their references.
        sampler = ALWAYS_OFF
    else:  # the SDK's, as it reads OTEL_TRACES_SAMPLER(_ARG) itself (default parent-based always-on)
        sampler = in_fewer_steps(sampling._get_from_env_or_default())
    provider = TracerProvider(resource=resource or build_resource(settings), sampler=sampler)
    if exporter is not None:
        provider.add_span_processor(CountingBatchSpanProcessor(exporter))  # drops are counted
    if console:  # stderr: stdout carries the JSON log lines only
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(out=sys.stderr)))
    return provider
