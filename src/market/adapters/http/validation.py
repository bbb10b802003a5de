"""Field-by-field validation errors for request bodies.

msgspec stops at the first bad field; clients deserve to hear about every one at once. When a body fails,
this re-checks each field of the handler's body type on its own (a cold path: only for rejected requests).
"""

from __future__ import annotations

import re
import types
import typing
from typing import Any

import msgspec
from litestar import Request
from litestar.exceptions import ClientException, ValidationException
from litestar.params import ParameterKwarg
from litestar.types import Empty
from litestar.utils.scope.state import ScopeState

_AT_PATH = re.compile(r" - at `\$\.?([^`]*)`$")

# Schema patterns are ECMA-262 regexes (JSON Schema) but msgspec checks them with Python's `re`, and the two `\s`
# differ: Python's also matches U+001C-U+001F and U+0085, ECMA's also U+FEFF. Spelling out the union makes a
# pattern mean the same to both, so the server never refuses a value its schema allows, nor takes one it forbids.
# PostgreSQL text cannot hold NUL (U+0000): text that is stored or looked up excludes it, a 422 rather than a 500.
SPACE = r"\s\x1c-\x1f\x85\ufeff"
"""The whitespace of both dialects, for use inside a character class."""
NO_NUL = r"^[^\x00]*$"
"""Pattern of free text (any characters but NUL)."""
NOT_BLANK = rf"^[{SPACE}]*[^{SPACE}\x00][^\x00]*$"
"""Pattern of text with at least one non-space character and no NUL (linear: no nested repetition)."""
# `$(?!\n)`: Python's `$` also matches before a final newline, ECMA's does not.
EMAIL = rf"^[^@{SPACE}\x00]+@[^@{SPACE}\x00]+\.[^@{SPACE}\x00]+$(?!\n)"
"""Pattern of an e-mail address: one @, no spaces, a dot in the domain (as the domain's EMAIL_PATTERN)."""


_BODILESS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE"})
MAX_BODY_DEPTH = 32
"""How deeply arrays and objects may nest in a JSON body. Our bodies nest two or three levels; the bound keeps
every walk over a decoded body (here and in msgspec) far from Python's recursion limit."""


class MalformedBody(ClientException):
    """A body that is not usable JSON at all: a 400 `malformed-request` problem carrying this detail."""


async def strict_body(request: Request[Any, Any, Any]) -> None:
    """`before_request` hook: check a JSON body strictly before Litestar converts it.

    Litestar converts bodies with msgspec's `strict=False`, so `"price_cents": "1999"` would pass as 1999
    though the schema says integer. A body that does not fit strictly is refused here, as Litestar refuses
    what does not fit at all (a 422 naming every bad field). Bodies that are not JSON are left to Litestar;
    invalid UTF-8 inside a string and nesting deeper than MAX_BODY_DEPTH are a 400 `malformed-request` here
    (msgspec raises UnicodeDecodeError and RecursionError for them, which would otherwise be 500s).
    JSON has one kind of number: `1999.0` is the integer 1999 to JSON Schema, and so it is here too (exactly
    that value, no float stored); `19.99` is not an integer and is refused."""
    if request.method in _BODILESS:
        return
    struct_type = _body_type(request)
    if struct_type is None:
        return
    try:
        raw = msgspec.json.decode(await request.body())
    except msgspec.DecodeError:
        return
    except UnicodeDecodeError:  # msgspec lets invalid UTF-8 inside a string escape as this
        raise MalformedBody("The request body is not valid UTF-8.") from None
    except RecursionError:
        raise MalformedBody(_TOO_DEEP) from None
    if _depth_exceeds(raw, MAX_BODY_DEPTH):
        raise MalformedBody(_TOO_DEEP)
    try:
        msgspec.convert(_whole_numbers(raw), struct_type)
    except msgspec.ValidationError:
        raise ValidationException("Validation failed", extra=[{"source": "body"}]) from None


_TOO_DEEP = f"The request body nests arrays or objects more than {MAX_BODY_DEPTH} levels deep."


def _depth_exceeds(value: Any, limit: int) -> bool:
    """Whether arrays and objects nest deeper than `limit` in a decoded JSON value (without recursing)."""
    level = [value]
    for _ in range(limit + 1):
        level = [
            child
            for node in level
            if isinstance(node, dict | list)
            for child in (node.values() if isinstance(node, dict) else node)
        ]
        if not level:
            return False
    return True


def _whole_numbers(value: Any) -> Any:
    """`value` with every float that has no fractional part turned into an int, at any depth."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _whole_numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_whole_numbers(item) for item in value]
    return value


def body_field_errors(request: Request[Any, Any, Any]) -> list[dict[str, str]] | None:
    """One {field, message} per bad field of the JSON body, or None when it cannot tell."""
    body = ScopeState.from_scope(request.scope).body
    struct_type = _body_type(request)
    if body is Empty or struct_type is None:
        return None
    try:
        raw = msgspec.json.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return None
    if _depth_exceeds(raw, MAX_BODY_DEPTH):
        return None
    raw = _whole_numbers(raw)
    if not isinstance(raw, dict):
        return [{"field": "body", "message": "must be a JSON object"}]
    errors: list[dict[str, str]] = []
    fields = msgspec.structs.fields(struct_type)
    for field in fields:
        if field.encode_name not in raw:
            if field.required:
                errors.append({"field": field.encode_name, "message": "is required"})
            continue
        try:
            msgspec.convert(raw[field.encode_name], field.type)
        except msgspec.ValidationError as exc:
            errors.append(_field_error(field.encode_name, field.type, str(exc), raw[field.encode_name]))
    if struct_type.__struct_config__.forbid_unknown_fields:
        known = {f.encode_name for f in fields}
        errors += [
            {"field": key, "message": "is not a field that can be set"} for key in raw if key not in known
        ]
    return errors or None


def _field_error(name: str, field_type: Any, message: str, value: Any = None) -> dict[str, str]:
    path = _AT_PATH.search(message)
    if path:
        message = message[: path.start()]
        if path.group(1):
            name = f"{name}.{path.group(1)}"
    if typing.get_origin(_strip(field_type)) is typing.Literal:
        values = typing.get_args(_strip(field_type))
        many = len(values) > 10
        message = (
            "is not one of the allowed values (the schema lists them)"
            if many
            else f"must be one of {', '.join(values)}"
        )
    elif "matching regex" in message and isinstance(value, str) and "\x00" in value:
        message = "must not contain NUL characters"
    elif "matching regex" in message:  # the regex itself means little to a person
        message = _PATTERN_MESSAGES.get(_pattern(field_type) or "", "is not in the expected form")
    return {"field": name, "message": plain(message)}


_PATTERN_MESSAGES = {
    EMAIL: "must be an e-mail address",
    NOT_BLANK: "must not be blank",
    NO_NUL: "is not valid",
}


def _pattern(field_type: Any) -> str | None:
    """The `msgspec.Meta(pattern=...)` of a field type, if it has one."""
    if typing.get_origin(field_type) is typing.Annotated:
        base, *metadata = typing.get_args(field_type)
        for meta in metadata:
            if isinstance(meta, msgspec.Meta) and meta.pattern:
                return meta.pattern
        return _pattern(base)
    for arg in typing.get_args(field_type):
        if arg is not msgspec.UnsetType and (pattern := _pattern(arg)):
            return pattern
    return None


def _strip(field_type: Any) -> Any:
    """`Annotated[X, ...]` and `X | UnsetType` down to X."""
    if typing.get_origin(field_type) is typing.Annotated:
        return _strip(typing.get_args(field_type)[0])
    args = [a for a in typing.get_args(field_type) if a is not msgspec.UnsetType]
    if typing.get_origin(field_type) in (typing.Union, types.UnionType) and len(args) == 1:
        return _strip(args[0])
    return field_type


def _body_type(request: Request[Any, Any, Any]) -> type[msgspec.Struct] | None:
    try:
        annotation = request.route_handler.parsed_fn_signature.parameters["data"].annotation
    except (KeyError, AttributeError):
        return None
    return annotation if isinstance(annotation, type) and issubclass(annotation, msgspec.Struct) else None


def public_name(request: Request[Any, Any, Any], key: str) -> str:
    """The name a client sent a parameter by: Litestar names a bad parameter by its Python name (`from_` of
    `QueryParameter(name="from")`), which the client never saw. A name the client did send stays as it is
    (`?from_=` is an unknown parameter named `from_`)."""
    if key in request.query_params:
        return key
    try:
        parameter = request.route_handler.parsed_fn_signature.parameters.get(key)
    except AttributeError:
        return key
    kwarg = parameter.kwarg_definition if parameter is not None else None
    return kwarg.name if isinstance(kwarg, ParameterKwarg) and kwarg.name else key


def plain(message: str) -> str:
    """msgspec's messages without markdown backticks: 'Expected `int` >= 0' -> 'expected int >= 0'."""
    text = message.replace("`", "")
    return text[:1].lower() + text[1:]
