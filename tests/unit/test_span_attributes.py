"""The span attributes' fast path stores exactly what the SDK's own path stores, and leaves to it everything else."""

from __future__ import annotations

import enum
import logging
import os
import subprocess
import sys
from types import MappingProxyType
from typing import Any

import pytest
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import SpanLimits, TracerProvider

from market.telemetry import span_attributes


class Colour(enum.IntEnum):
    RED = 1


class Text(str):
    pass


CASES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("plain", {}, {"http.request.method": "GET", "http.response.status_code": 200, "ratio": 0.5, "ok": True}),
    ("a key set again moves to the end", {"a": "1", "b": "2"}, {"a": "3", "c": 4}),
    ("sequence", {}, {"tags": ["a", "b"], "n": 1}),
    ("none", {}, {"gone": None, "n": 1}),
    ("int subclass", {}, {"colour": Colour.RED}),
    ("str subclass", {}, {"text": Text("x")}),
    ("empty key", {}, {"": "x", "n": 1}),
    ("non-str key", {}, {1: "x"}),
    ("bytes", {}, {"raw": b"\x00"}),
    ("object", {}, {"thing": object()}),
    ("mapping", {}, {"nested": {"a": 1}}),
]


def _both(
    before: dict[str, Any], attributes: dict[str, Any], **limits: Any
) -> tuple[BoundedAttributes, BoundedAttributes]:
    made = []
    for fast in (False, True):
        bounded = BoundedAttributes(immutable=False, **limits)
        bounded._set_items(before)
        if fast:
            span_attributes._set_items(bounded, attributes)
        else:
            span_attributes._sdk_set_items(bounded, attributes)
        made.append(bounded)
    return made[0], made[1]


def _same(sdk: BoundedAttributes, fast: BoundedAttributes) -> None:
    assert list(fast._dict.items()) == list(sdk._dict.items())  # the same pairs, in the same order
    assert fast.dropped == sdk.dropped


@pytest.mark.parametrize(("before", "attributes"), [case[1:] for case in CASES], ids=[c[0] for c in CASES])
def test_the_fast_path_stores_what_the_sdk_stores(before: dict[str, Any], attributes: dict[str, Any]) -> None:
    sdk, fast = _both(before, attributes)
    _same(sdk, fast)
    # What the fast path stored is the value itself: an IntEnum stays an IntEnum only if the SDK keeps it too.
    for key, value in fast._dict.items():
        assert type(value) is type(sdk._dict[key])


def test_plain_attributes_skip_the_sdk_cleaning(monkeypatch: pytest.MonkeyPatch) -> None:
    cleaned = []
    monkeypatch.setattr(
        "opentelemetry.attributes._clean_attribute_value", lambda value, limit: cleaned.append(value) or value
    )
    bounded = BoundedAttributes(immutable=False)
    span_attributes._set_items(bounded, {"a": "x", "b": 2})
    span_attributes._set_items(bounded, MappingProxyType({"c": 1.5}))  # what a sampler hands a new span
    monkeypatch.setattr(BoundedAttributes, "_set_items", span_attributes._set_items)
    span = TracerProvider().get_tracer("test").start_span("s", attributes={"d": True})
    span.set_attributes({"e": "y"})
    assert cleaned == []
    assert dict(span.attributes) == {"d": True, "e": "y"}
    span_attributes._set_items(bounded, {"c": ["x"]})
    assert cleaned == [{"c": ["x"]}]  # anything else: the SDK's path


def test_a_long_string_is_cut_by_the_sdk_with_its_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="opentelemetry.attributes"):
        sdk, fast = _both({}, {"q": "x" * 10, "n": 1}, max_value_len=4)
    _same(sdk, fast)
    assert fast._dict["q"] == "xxxx"
    assert [r.message for r in caplog.records].count(caplog.records[0].message) == 2  # once per path


def test_a_full_mapping_evicts_as_the_sdk_does() -> None:
    sdk, fast = _both({"a": "1", "b": "2"}, {"c": "3", "d": "4"}, maxlen=3)
    _same(sdk, fast)
    assert list(fast._dict) == ["b", "c", "d"] and fast.dropped == 1


def test_an_immutable_mapping_still_refuses() -> None:
    bounded = BoundedAttributes(attributes={"a": "1"}, immutable=True)
    with pytest.raises(TypeError):
        span_attributes._set_items(bounded, {"b": "2"})


def test_spans_made_with_the_fast_path_carry_the_same_attributes(monkeypatch: pytest.MonkeyPatch) -> None:
    tracer = TracerProvider(span_limits=SpanLimits(max_span_attributes=5)).get_tracer("test")
    attributes = {"http.request.method": "GET", "url.path": "/api/v1/items", "http.response.status_code": 200}
    spans = []
    for path in (span_attributes._sdk_set_items, span_attributes._set_items):
        monkeypatch.setattr(BoundedAttributes, "_set_items", path)
        span = tracer.start_span("GET", attributes=attributes)
        span.set_attributes({"http.route": "/api/v1/items", "extra": [1, 2]})
        span.end()
        spans.append(span)
    plain, fast = spans
    assert dict(fast.attributes) == dict(plain.attributes)
    assert dict(fast.attributes) == {**attributes, "http.route": "/api/v1/items", "extra": (1, 2)}
    assert fast.dropped_attributes == plain.dropped_attributes == 0


def test_telemetry_installs_the_fast_path(tmp_path: Any) -> None:
    # In a process of its own: installing telemetry sets this process's global providers.
    script = (
        "from opentelemetry.attributes import BoundedAttributes\n"
        "from market.config import Settings\n"
        "from market.telemetry import span_attributes\n"
        "from market.telemetry.setup import install_telemetry\n"
        "assert BoundedAttributes._set_items is span_attributes._sdk_set_items\n"
        "install_telemetry(Settings.from_env(dotenv=None))\n"
        "assert BoundedAttributes._set_items is span_attributes._set_items\n"
    )
    environ = {**os.environ, "MARKET_VAR_DIR": str(tmp_path)}
    subprocess.run([sys.executable, "-c", script], check=True, cwd=tmp_path, env=environ, timeout=60)
