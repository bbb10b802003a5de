"""Finished spans to OTLP/HTTP protobuf bytes, written directly.

The SDK's encoder builds a protobuf message object per span, attribute, value, event and link, then serializes
the tree: ~40 µs per span, paid by the exporter thread for every span at 100 % sampling, on the same cores as
the requests. This writes the same `ExportTraceServiceRequest` bytes straight from the `ReadableSpan`s
(~9 µs per span). The output is the SDK encoder's (opentelemetry-exporter-otlp-proto-common 1.45), field by
field: the same fields set and left out, the same grouping by resource and scope, an attribute the SDK would
skip (a value protobuf cannot hold) skipped and logged alike; tests/unit/test_otlp_span_encoding.py decodes
both and compares them.

Only the encoding changes: `OtlpHttpSpanExporter` is the SDK's OTLP/HTTP exporter (endpoint, headers,
compression, timeout, retries, size limit, its own metrics, shutdown) with its `export` taking these bytes.
gRPC keeps the SDK's exporter and encoder.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.trace import SpanKind, StatusCode

from . import names

_logger = logging.getLogger(__name__)

_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1
_MASK64 = (1 << 64) - 1
_KIND = {  # opentelemetry.proto.trace.v1.Span.SpanKind: the API's value + 1
    SpanKind.INTERNAL: 1,
    SpanKind.SERVER: 2,
    SpanKind.CLIENT: 3,
    SpanKind.PRODUCER: 4,
    SpanKind.CONSUMER: 5,
}
_SERVER_FIELD = b"\x30" + bytes((_KIND[SpanKind.SERVER],))
_CLIENT_FIELD = b"\x30" + bytes((_KIND[SpanKind.CLIENT],))
# Span.flags / Link.flags (fixed32): SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK, | CONTEXT_IS_REMOTE_MASK.
_FLAGS_LOCAL = b"\x00\x01\x00\x00"
_FLAGS_REMOTE = b"\x00\x03\x00\x00"
_pack_fixed64 = struct.Struct("<Q").pack
_pack_double = struct.Struct("<d").pack

_CACHE_LIMIT = 4096
"""Encoded key-value pairs kept (statement texts, routes, methods: a small set); past this the cache starts
over."""
_str_pairs: dict[bytes, dict[tuple[str, Any], bytes]] = {}
"""Per field tag (the same pair is a span's, an event's or a link's attribute under another field), encoded
key-value pairs with a `str` value, keyed by the pair."""
_int_pairs: dict[tuple[bytes, str, int], bytes] = {}
_float_cache: dict[float, bytes] = {}
_name_cache: dict[str, bytes] = {}
"""Span names: routes and statements (a small set), as complete fields."""
_header_cache: dict[tuple[Any, Any], tuple[bytes, bytes]] = {}


def _varint(value: int) -> bytes:
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: its tag, the length, the payload."""
    size = len(payload)
    if size < 0x80:
        return tag + bytes((size,)) + payload
    if size < 0x4000:  # a span, most attribute lists: two bytes of varint, without _varint's loop
        return tag + bytes(((size & 0x7F) | 0x80, size >> 7)) + payload
    return tag + _varint(size) + payload


def _string(tag: bytes, value: str) -> bytes:
    return _field(tag, value.encode("utf-8"))


def _any_value(value: Any) -> bytes:
    """An AnyValue message's payload (the SDK's `_encode_value`, same order of type checks)."""
    if value is None:
        return b""
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, str):
        return _field(b"\x0a", value.encode("utf-8"))
    if isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise ValueError(f"Value out of range: {value}")
        return b"\x18" + _varint(value & _MASK64)
    if isinstance(value, float):
        encoded = _float_cache.get(value)
        if encoded is None or value == 0.0:  # 0.0 == -0.0: those two are not cached
            encoded = b"\x21" + _pack_double(value)
            if value == value and value != 0.0:  # NaN is never found again
                if len(_float_cache) >= _CACHE_LIMIT:
                    _float_cache.clear()
                _float_cache[value] = encoded
        return encoded
    if isinstance(value, bytes):
        return _field(b"\x3a", value)
    if isinstance(value, Sequence):
        return _field(b"\x2a", b"".join([_field(b"\x0a", _any_value(item)) for item in value]))
    if isinstance(value, Mapping):
        return _field(
            b"\x32",
            b"".join([_field(b"\x0a", _key_value(str(k), v)) for k, v in value.items()]),
        )
    raise Exception(f"Invalid type {type(value)} of value {value}")  # the SDK encoder raises the same


def _key_value(key: str, value: Any) -> bytes:
    return _field(b"\x0a", key.encode("utf-8")) + _field(b"\x12", _any_value(value))


def _attributes(tag: bytes, attributes: Mapping[str, Any] | None) -> bytes:
    """Each attribute as a repeated KeyValue field; one the SDK's encoder would fail on is logged and left out."""
    # The SDK's BoundedAttributes is a MutableMapping written in Python (its length, each item an `__iter__`
    # step and a `__getitem__` call); the dict inside it answers in C.
    attributes = getattr(attributes, "_dict", attributes)
    if not attributes:
        return b""
    cache = _str_pairs.get(tag)
    if cache is None:
        cache = _str_pairs[tag] = {}
    parts = []
    for item in attributes.items():
        # Looked up by the (key, value) pair the dict hands out, without a tuple of our own. Only pairs with a
        # `str` value are kept, so another value equal to a kept one (1 == True == 1.0) cannot match any: a
        # string equals only a string (a `str` subclass is encoded as one too).
        try:
            found = cache.get(item)
        except TypeError:  # an unhashable value (a mapping)
            found = None
        if found is None:
            found = _pair(tag, item, cache)
            if found is None:
                continue
        parts.append(found)
    return b"".join(parts)


def _pair(tag: bytes, item: tuple[str, Any], strings: dict[tuple[str, Any], bytes]) -> bytes | None:
    """One KeyValue field, kept in `strings` when its value is a `str` (statement texts, routes, names: a
    small set) or in `_int_pairs` when an `int` (statuses); None when the SDK's encoder would fail on it."""
    key, value = item
    kind = value.__class__
    if kind is int:
        found = _int_pairs.get((tag, key, value))
        if found is not None:
            return found
    try:
        found = _field(tag, _key_value(key, value))
    except Exception as error:
        _logger.exception("Failed to encode key %s: %s", key, error)
        return None
    if kind is str:
        if len(strings) >= _CACHE_LIMIT:
            strings.clear()
        strings[item] = found
    elif kind is int:  # keyed by type-checked value only: True and 1.0 never reach this cache
        if len(_int_pairs) >= _CACHE_LIMIT:
            _int_pairs.clear()
        _int_pairs[tag, key, value] = found
    return found


def _scope_header(resource: Any, scope: Any) -> tuple[bytes, bytes]:
    """(ResourceSpans' resource field, ScopeSpans' scope field), each a complete field; cached per pair."""
    key = (resource, scope)
    found = _header_cache.get(key)
    if found is None:
        resource_field = _field(b"\x0a", _attributes(b"\x0a", resource.attributes))
        if scope is None:
            scope_payload = b""
        else:
            scope_payload = b"".join(
                [
                    _string(b"\x0a", scope.name) if scope.name else b"",
                    _string(b"\x12", scope.version) if scope.version else b"",
                    _attributes(b"\x1a", scope.attributes),
                ]
            )
        found = (resource_field, _field(b"\x0a", scope_payload))
        if len(_header_cache) >= 64:
            _header_cache.clear()
        _header_cache[key] = found
    return found


def _span(span: ReadableSpan) -> bytes:
    # The span's own fields rather than its properties: each property is a Python call, and some copy what they
    # return (a read-only view of the attributes, tuples of the events and links), for every span exported.
    context = span._context
    parent = span._parent
    parts = [
        b"\x0a\x10",
        context.trace_id.to_bytes(16, "big"),
        b"\x12\x08",
        context.span_id.to_bytes(8, "big"),
    ]
    trace_state = context.trace_state
    if trace_state:  # usually empty
        state = ",".join([f"{key}={value}" for key, value in trace_state.items()])
        if state:
            parts.append(_string(b"\x1a", state))
    if parent:
        parts += (b"\x22\x08", parent.span_id.to_bytes(8, "big"))
    name = span._name
    if name:
        found = _name_cache.get(name)
        if found is None:
            if len(_name_cache) >= _CACHE_LIMIT:
                _name_cache.clear()
            found = _name_cache[name] = _string(b"\x2a", name)
        parts.append(found)
    parts.append(_kind_field(span._kind))
    if span._start_time:
        parts += (b"\x39", _pack_fixed64(span._start_time))
    if span._end_time:
        parts += (b"\x41", _pack_fixed64(span._end_time))
    attributes = span._attributes
    parts.append(_attributes(b"\x4a", attributes))
    dropped = getattr(attributes, "dropped", 0)  # ReadableSpan.dropped_attributes: a BoundedAttributes' count
    if dropped:
        parts += (b"\x50", _varint(dropped))
    events = span._events
    for event in getattr(events, "_dq", events) or ():  # a BoundedList's deque: its length without a call
        event_parts = []
        if event.timestamp:
            event_parts += (b"\x09", _pack_fixed64(event.timestamp))
        if event.name:
            event_parts.append(_string(b"\x12", event.name))
        event_parts.append(_attributes(b"\x1a", event.attributes))
        if event.dropped_attributes:
            event_parts += (b"\x20", _varint(event.dropped_attributes))
        parts.append(_field(b"\x5a", b"".join(event_parts)))
    dropped = getattr(events, "dropped", 0)  # a BoundedList's count, as ReadableSpan.dropped_events
    if dropped:
        parts += (b"\x60", _varint(dropped))
    links = span._links
    for link in getattr(links, "_dq", links) or ():
        linked = link.context
        link_parts = [
            b"\x0a\x10",
            linked.trace_id.to_bytes(16, "big"),
            b"\x12\x08",
            linked.span_id.to_bytes(8, "big"),
            _attributes(b"\x22", link.attributes),
        ]
        if link.dropped_attributes:
            link_parts += (b"\x28", _varint(link.dropped_attributes))
        link_parts += (b"\x35", _FLAGS_REMOTE if linked.is_remote else _FLAGS_LOCAL)
        parts.append(_field(b"\x6a", b"".join(link_parts)))
    dropped = getattr(links, "dropped", 0)
    if dropped:
        parts += (b"\x70", _varint(dropped))
    status = span._status
    if status is not None:
        code = status.status_code
        description = status.description
        if code is StatusCode.UNSET and not description:
            parts.append(b"\x7a\x00")  # the common case: an empty Status message
        else:
            value = code.value  # UNSET 0, OK 1, ERROR 2: the protobuf's numbers
            parts.append(
                _field(
                    b"\x7a",
                    (_string(b"\x12", description) if description else b"")
                    + (b"\x18" + bytes((value,)) if value else b""),
                )
            )
    parts += (b"\x85\x01", _FLAGS_REMOTE if parent and parent.is_remote else _FLAGS_LOCAL)
    return b"".join(parts)


def _kind_field(kind: SpanKind) -> bytes:
    """Compared by identity first: an Enum member's hash is a Python call."""
    if kind is SpanKind.SERVER:
        return _SERVER_FIELD
    if kind is SpanKind.CLIENT:
        return _CLIENT_FIELD
    return b"\x30" + bytes((_KIND[kind],))


def encode_spans(spans: Sequence[ReadableSpan]) -> bytes:
    """The serialized ExportTraceServiceRequest for `spans`, as the SDK's
    `encode_spans(spans).SerializePartialToString()` would write it."""
    grouped: dict[Any, dict[Any, list[bytes]]] = {}
    for span in spans:
        resource = span._resource
        scope = span._instrumentation_scope or None
        by_scope = grouped.get(resource)
        if by_scope is None:
            by_scope = grouped[resource] = {}
        encoded = _field(b"\x12", _span(span))
        in_scope = by_scope.get(scope)
        if in_scope is None:
            by_scope[scope] = [encoded]
        else:
            in_scope.append(encoded)
    out = []
    for resource, by_scope in grouped.items():
        resource_parts = []
        for scope, encoded_spans in by_scope.items():
            resource_field, scope_field = _scope_header(resource, scope)
            scope_parts = [scope_field, *encoded_spans]
            if scope is not None and scope.schema_url:
                scope_parts.append(_string(b"\x1a", scope.schema_url))
            resource_parts.append(_field(b"\x12", b"".join(scope_parts)))
        if resource.schema_url:
            resource_parts.append(_string(b"\x1a", resource.schema_url))
        out.append(_field(b"\x0a", resource_field + b"".join(resource_parts)))
    return b"".join(out)


class OtlpHttpSpanExporter(OTLPSpanExporter):
    """The SDK's OTLP/HTTP span exporter, writing the request body with `encode_spans` above. Everything else is
    the SDK's: `export` below is its own (opentelemetry-exporter-otlp-proto-http 1.45) but for the encoding."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._shutdown:
            _logger.warning("Exporter already shutdown, ignoring batch")
            return SpanExportResult.FAILURE
        with self._metrics.export_operation(len(spans)) as result:
            try:
                serialized = encode_spans(spans)
            except Exception as error:
                _logger.error("Failed to encode span batch: %s", error)
                result.error = error
                return SpanExportResult.FAILURE
            if 0 < self._max_request_size < len(serialized):
                _logger.warning(
                    "Dropping span batch: serialized size %d bytes exceeds max_request_size %d bytes.",
                    len(serialized),
                    self._max_request_size,
                )
                from opentelemetry.exporter.otlp.proto.http._common import RequestPayloadTooLargeError

                result.error = RequestPayloadTooLargeError(
                    f"Serialized span request size {len(serialized)} bytes exceeds max_request_size "
                    f"{self._max_request_size} bytes."
                )
                return SpanExportResult.FAILURE
            exported = self._client.export(serialized)
            if not exported.success:
                result.error = exported.error
                result.error_attrs = (
                    {names.HTTP_RESPONSE_STATUS_CODE: exported.status_code}
                    if exported.status_code is not None
                    else None
                )
                return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS
