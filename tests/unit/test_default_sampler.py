"""The parent-based samplers in fewer steps decide exactly as the SDK's, and replace only those."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    DEFAULT_ON,
    ParentBased,
    ParentBasedTraceIdRatio,
    StaticSampler,
    TraceIdRatioBased,
)
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState

from market.config import Settings
from market.telemetry.tracing import OneLookParentBased, build_tracer_provider, in_fewer_steps

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
SDK_SAMPLERS = {
    "parentbased_always_on": DEFAULT_ON,
    "parentbased_traceidratio 0.5": ParentBasedTraceIdRatio(0.5),
    "parentbased_traceidratio 0": ParentBasedTraceIdRatio(0.0),
    "parentbased_always_off": ParentBased(ALWAYS_OFF),
}
# Trace ids on both sides of the 0.5 ratio's bound, and one whose high 64 bits alone would pass it.
TRACE_IDS = (0x1, (1 << 63) - 1, 1 << 63, (1 << 64) - 1, (1 << 100) | 0x5)


@pytest.mark.parametrize("sdk", SDK_SAMPLERS.values(), ids=SDK_SAMPLERS.keys())
@pytest.mark.parametrize("parent", PARENTS.values(), ids=PARENTS.keys())
def test_it_decides_as_the_sdks_sampler(parent: trace.Context | None, sdk: ParentBased) -> None:
    ours = in_fewer_steps(sdk)
    assert isinstance(ours, OneLookParentBased)
    attributes = {"http.request.method": "GET"}
    for trace_id in TRACE_IDS:
        mine = ours.should_sample(parent, trace_id, "GET", attributes=attributes)
        theirs = sdk.should_sample(parent, trace_id, "GET", attributes=attributes)
        assert (mine.decision, mine.attributes, mine.trace_state) == (
            theirs.decision,
            theirs.attributes,
            theirs.trace_state,
        )
    assert ours.get_description() == sdk.get_description()


def test_other_samplers_are_left_as_they_are() -> None:
    custom = ParentBased(ALWAYS_ON, remote_parent_not_sampled=ALWAYS_ON)
    ratio = TraceIdRatioBased(0.1)
    for sampler in (custom, ratio, ALWAYS_ON, ALWAYS_OFF, StaticSampler(ALWAYS_ON._decision)):
        assert in_fewer_steps(sampler) is sampler


def _sampler(environ: dict[str, str]) -> object:
    provider = build_tracer_provider(Settings.from_env({}, dotenv=None), environ, Resource.create({}))
    try:
        return provider.sampler
    finally:
        provider.shutdown()


def test_the_service_uses_it_for_the_sdks_parent_based_samplers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_TRACES_SAMPLER", raising=False)
    monkeypatch.delenv("OTEL_TRACES_SAMPLER_ARG", raising=False)
    console = {"OTEL_TRACES_EXPORTER": "console"}
    default = _sampler(console)
    assert isinstance(default, OneLookParentBased) and default._root is ALWAYS_ON
    assert _sampler({}) is ALWAYS_OFF  # nothing would receive the spans
    # The SDK reads its own variables (the rate too): the same sampler as it would build, in fewer steps.
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.1")
    chosen = _sampler({**console, "OTEL_TRACES_SAMPLER": "parentbased_traceidratio"})
    assert isinstance(chosen, OneLookParentBased)
    assert isinstance(chosen._root, TraceIdRatioBased) and chosen._root.rate == 0.1
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "traceidratio")
    plain = _sampler({**console, "OTEL_TRACES_SAMPLER": "traceidratio"})
    assert type(plain) is TraceIdRatioBased and plain.rate == 0.1
