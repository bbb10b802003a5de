"""Builds the telemetry of one process — tracer provider, meter provider, instruments, the /metrics
exposition — installs it as the OpenTelemetry globals, and shuts it down within a bounded time.

Built inside each worker process (after fork), never at import time. Building twice in one process (tests
create many apps) returns the same providers: OpenTelemetry's globals can be set only once.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from opentelemetry import metrics, trace
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import NoOpTracer, Tracer

from market.config import Settings

from .log_export import install_log_export
from .metrics import Instruments, SharedMetricReader, build_meter_provider
from .names import INSTRUMENTATION_SCOPE
from .prometheus import MetricsExposition, SnapshotDirectory
from .span_attributes import install as install_span_attributes_fast_path
from .tracing import build_resource, build_tracer_provider

log = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT_S = 3.0


@dataclass(frozen=True, slots=True)
class Telemetry:
    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    instruments: Instruments
    exposition: MetricsExposition
    logger_provider: LoggerProvider | None = None
    """Only when OTLP log export is on (OTEL_LOGS_EXPORTER=otlp)."""

    @property
    def tracer(self) -> Tracer:
        return self.tracer_provider.get_tracer(INSTRUMENTATION_SCOPE)

    @property
    def spans_recorded(self) -> bool:
        """Whether any span is recorded: not with the SDK disabled, nor when nothing would receive them
        (no exporter: build_tracer_provider's ALWAYS_OFF sampler)."""
        return self.tracer_provider.sampler is not ALWAYS_OFF and not isinstance(self.tracer, NoOpTracer)

    def shutdown(self, timeout_s: float = SHUTDOWN_TIMEOUT_S) -> None:
        """Flush and stop exporters, giving up after `timeout_s`: an unreachable collector must not hold a
        worker's exit for 30 s (the SDK's own shutdown takes no deadline and blocks that long against a collector that never answers)."""

        def stop() -> None:
            self.meter_provider.shutdown(timeout_millis=timeout_s * 1000)
            self.tracer_provider.shutdown()
            if self.logger_provider is not None:
                self.logger_provider.shutdown()

        worker = threading.Thread(target=stop, name="telemetry-shutdown", daemon=True)
        worker.start()
        worker.join(timeout_s)
        if worker.is_alive():
            log.warning("telemetry exporters did not stop in time; unsent data is dropped")


_installed: Telemetry | None = None
_lock = threading.Lock()


def metrics_directory(settings: Settings) -> SnapshotDirectory:
    return SnapshotDirectory(settings.var_dir / "metrics")


def install_telemetry(settings: Settings) -> Telemetry:
    """This process's telemetry, built and installed on first call."""
    global _installed
    with _lock:
        if _installed is None:
            install_span_attributes_fast_path()
            resource = build_resource(settings)
            reader = SharedMetricReader(resource)
            tracer_provider = build_tracer_provider(settings, resource=resource)
            meter_provider = build_meter_provider(resource, reader, settings.telemetry.otel_environ())
            trace.set_tracer_provider(tracer_provider)
            metrics.set_meter_provider(meter_provider)
            _installed = Telemetry(
                tracer_provider=tracer_provider,
                meter_provider=meter_provider,
                instruments=Instruments.create(meter_provider.get_meter(INSTRUMENTATION_SCOPE), reader),
                exposition=MetricsExposition(reader, metrics_directory(settings), resource),
                logger_provider=install_log_export(resource, settings.telemetry.otel_environ()),
            )
        return _installed
