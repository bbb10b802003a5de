"""The default sampler decides exactly as the SDK's `parentbased_always_on`, and is used only by default."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, DEFAULT_ON, ParentBased, TraceIdRatioBased
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState

from market.config import Settings
from market.telemetry.tracing import ParentBasedAlwaysOn, build_tracer_provider

STATE = TraceState([("vendor", "value")])


def _parent(*, remote: bool, sampled: bool, state: TraceState | None = STATE) -> trace.Context:
    flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
    ids = SpanContext(0xABC, 0xDEF, is_remote=remote, trace_flags=flags, trace_state=state)
    return trace.set_span_in_context(NonRecordingSpan(ids))


PARENTS = {
    "none": None,
    "an invalid span": trace.set_span_in_context(trace.INVALID_SPAN),
    "remote, sampled": _parent(remote=True, sampled=True),
    "remote, not sampled": _parent(remote=True, sampled=False),
    "local, sampled": _parent(remote=False, sampled=True),
    "local, not sampled": _parent(remote=False, sampled=False),
    "local, sampled, no trace state": _parent(remote=False, sampled=True, state=None),
}


@pytest.mark.parametrize("parent", PARENTS.values(), ids=PARENTS.keys())
def test_it_decides_as_the_sdks_default(parent: trace.Context | None) -> None:
    attributes = {"http.request.method": "GET"}
    ours = ParentBasedAlwaysOn().should_sample(parent, 0xABC, "GET", attributes=attributes)
    theirs = DEFAULT_ON.should_sample(parent, 0xABC, "GET", attributes=attributes)
    assert ours.decision == theirs.decision
    assert ours.attributes == theirs.attributes
    assert ours.trace_state == theirs.trace_state


def test_it_describes_itself_as_the_sdks_default() -> None:
    assert isinstance(DEFAULT_ON, ParentBased)
    assert ParentBasedAlwaysOn().get_description() == DEFAULT_ON.get_description()


def _sampler(environ: dict[str, str]) -> object:
    provider = build_tracer_provider(Settings.from_env({}, dotenv=None), environ, Resource.create({}))
    try:
        return provider.sampler
    finally:
        provider.shutdown()


def test_it_is_the_default_only(monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(_sampler({"OTEL_TRACES_EXPORTER": "console"}), ParentBasedAlwaysOn)
    assert _sampler({}) is ALWAYS_OFF  # nothing would receive the spans
    ratio = {"OTEL_TRACES_EXPORTER": "console", "OTEL_TRACES_SAMPLER": "parentbased_traceidratio"}
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")  # the SDK reads its own variable
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.1")
    chosen = _sampler(ratio)
    assert isinstance(chosen, ParentBased) and not isinstance(chosen, ParentBasedAlwaysOn)
    assert isinstance(chosen._root, TraceIdRatioBased)
