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
from litestar.types import Empty
from litestar.utils.scope.state import ScopeState

_AT_PATH = re.compile(r" - at `\$\.?([^`]*)`$")


def body_field_errors(request: Request[Any, Any, Any]) -> list[dict[str, str]] | None:
    """One {field, message} per bad field of the JSON body, or None when it cannot tell."""
    body = ScopeState.from_scope(request.scope).body
    struct_type = _body_type(request)
    if body is Empty or struct_type is None:
        return None
    try:
        raw = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return None
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
            errors.append(_field_error(field.encode_name, field.type, str(exc)))
    if struct_type.__struct_config__.forbid_unknown_fields:
        known = {f.encode_name for f in fields}
        errors += [
            {"field": key, "message": "is not a field that can be set"} for key in raw if key not in known
        ]
    return errors or None


def _field_error(name: str, field_type: Any, message: str) -> dict[str, str]:
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
    return {"field": name, "message": plain(message)}


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


def plain(message: str) -> str:
    """msgspec's messages without markdown backticks: 'Expected `int` >= 0' -> 'expected int >= 0'."""
    text = message.replace("`", "")
    return text[:1].lower() + text[1:]
