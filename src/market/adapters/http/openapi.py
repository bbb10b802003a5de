"""OpenAPI helpers: every documented error is a problem+json body."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import msgspec
from litestar import Litestar
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import (
    Link,
    OpenAPI,
    OpenAPIMediaType,
    OpenAPIResponse,
    Operation,
    Reference,
    Schema,
)
from litestar.plugins import OpenAPISchemaPlugin
from litestar.routes import HTTPRoute
from litestar.typing import FieldDefinition

from .problems import PROBLEM_JSON, Problem

_DESCRIPTIONS = {
    400: "Malformed request or invalid parameter (problem+json).",
    401: "Missing, malformed or expired bearer token (problem+json).",
    402: "The payment was declined (problem+json).",
    403: "Authenticated, but the role may not do this (problem+json).",
    404: "No such object, or not visible to the caller (problem+json).",
    405: "Method not allowed (problem+json).",
    409: "Conflicts with the current state (problem+json).",
    413: "Body larger than 1 MiB (problem+json).",
    415: "Unsupported media type (problem+json).",
    422: "Valid JSON with invalid fields; `errors` names each one (problem+json).",
    429: "Too many requests from this address or at this account; see `Retry-After` (problem+json).",
    500: "Our fault; `detail` quotes the trace id (problem+json).",
    503: "A dependency is down, or the service is shedding load; see `Retry-After` (problem+json).",
}

BEARER = [{"bearer": []}]
"""`security=` of operations that need a bearer token (documents the 401 that schemathesis probes)."""


def problems(*statuses: int) -> dict[int, ResponseSpec]:
    """Response specs for the given statuses, plus 500 which any operation can return."""
    return {
        status: ResponseSpec(
            data_container=Problem,
            media_type=PROBLEM_JSON,
            description=_DESCRIPTIONS[status],
            generate_examples=False,
        )
        for status in sorted({*statuses, 500})
    }


class StructSchemaPlugin(OpenAPISchemaPlugin):
    """Corrects two gaps in the schemas Litestar derives from msgspec Structs (it does the rest; this delegates):

    - a Struct declared with `forbid_unknown_fields=True` answers unknown keys with a 422, so its schema says
      `additionalProperties: false` (clients, and schemathesis, then know an extra key is an error);
    - an optional field (`X | UnsetType`) comes out as a one-branch `oneOf` with the constraints beside it, and
      a bound of 0 (`ge=0`) is dropped there (a truthiness test), which made a negative `price_cents` look valid
      in PATCH: the branch is flattened and zero bounds are restored from the Struct's own metadata.
    """

    def is_plugin_supported_field(self, field_definition: FieldDefinition) -> bool:
        return not field_definition.is_union and field_definition.is_subclass_of(msgspec.Struct)

    def to_openapi_schema(self, field_definition: FieldDefinition, schema_creator: Any) -> Schema:
        builtin = next(
            plugin
            for plugin in schema_creator.plugins
            if plugin is not self and schema_creator.plugin_supports_field(plugin, field_definition)
        )
        schema: Schema = builtin.to_openapi_schema(field_definition, schema_creator)
        struct_type = field_definition.type_
        if struct_type.__struct_config__.forbid_unknown_fields:
            schema.additional_properties = False
        for field in msgspec.inspect.type_info(struct_type).fields:  # type: ignore[attr-defined]
            prop = (schema.properties or {}).get(field.encode_name)
            if not isinstance(prop, Schema):
                continue
            if prop.one_of and len(prop.one_of) == 1 and isinstance(prop.one_of[0], Schema):
                branch, prop.one_of = prop.one_of[0], None
                for attribute in dataclasses.fields(branch):
                    value = getattr(branch, attribute.name)
                    if value is not None and getattr(prop, attribute.name) is None:
                        setattr(prop, attribute.name, value)
            number = _number_type(field.type)
            for constraint, keyword in _BOUNDS if number is not None else ():
                if getattr(number, constraint) == 0 and getattr(prop, keyword) is None:
                    setattr(prop, keyword, 0)
        return schema


_BOUNDS = (("ge", "minimum"), ("gt", "exclusive_minimum"), ("le", "maximum"), ("lt", "exclusive_maximum"))


def _number_type(info: Any) -> Any:
    """The msgspec IntType/FloatType of a field (through Metadata and unions with one number), or None."""
    if isinstance(info, msgspec.inspect.Metadata):
        return _number_type(info.type)
    if isinstance(info, msgspec.inspect.IntType | msgspec.inspect.FloatType):
        return info
    if isinstance(info, msgspec.inspect.UnionType):
        numbers = [n for n in map(_number_type, info.types) if n is not None]
        return numbers[0] if len(numbers) == 1 else None
    return None


_OPERATIONS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def _operations(openapi: OpenAPI) -> Iterator[Operation]:
    for path_item in (openapi.paths or {}).values():
        for method in _OPERATIONS:
            if (operation := getattr(path_item, method, None)) is not None:
                yield operation


def bearer_where_guarded(app: Litestar) -> None:
    """Operations whose handler has a guard (every guard here but the rate limits authenticates the bearer token
    first) declare `security: bearer` and document the 401, unless they say otherwise themselves."""
    guarded = {
        handler.operation_id
        for route in app.routes
        if isinstance(route, HTTPRoute)
        for handler in route.route_handlers
        if isinstance(handler.operation_id, str)
        and any(not getattr(guard, "is_rate_limit", False) for guard in handler.resolve_guards())
    }
    for operation in _operations(app.openapi_schema):
        if operation.operation_id in guarded and operation.security is None:
            operation.security = BEARER  # type: ignore[assignment]
            operation.responses = operation.responses or {}
            operation.responses.setdefault("401", _problem_response(401))


def errors_as_problems(openapi: OpenAPI) -> None:
    """Document every 4xx/5xx as problem+json. Litestar adds its own 400 (for handlers with parameters) as
    `application/json` in the shape of its internal ValidationException; here that body never leaves the
    service, the problem-details handlers answer instead."""
    for operation in _operations(openapi):
        for status, response in list((operation.responses or {}).items()):
            if status[:1] not in ("4", "5") or isinstance(response, Reference):
                continue
            if response.content and set(response.content) == {PROBLEM_JSON}:
                continue
            operation.responses[status] = _problem_response(int(status))  # type: ignore[index]


_ITEM_ID = {"item_id": "$response.body#/id"}
_LINKS: dict[tuple[str, str], dict[str, Link]] = {
    ("register", "201"): {
        "IssueToken": Link(
            operation_id="issueToken",
            request_body={"email": "$request.body#/email", "password": "$request.body#/password"},
            description="Sign in with the account just registered.",
        )
    },
    ("createItem", "201"): {
        "GetItem": Link(operation_id="getItem", parameters=_ITEM_ID),
        "UpdateItem": Link(operation_id="updateItem", parameters=_ITEM_ID),
        "ArchiveItem": Link(operation_id="archiveItem", parameters=_ITEM_ID),
        "SetCartQuantity": Link(operation_id="setCartQuantity", parameters=_ITEM_ID),
    },
    ("updateItem", "200"): {"GetItem": Link(operation_id="getItem", parameters=_ITEM_ID)},
    ("setCartQuantity", "200"): {
        "RemoveCartLine": Link(
            operation_id="removeCartLine", parameters={"item_id": "$request.path.item_id"}
        ),
        "GetCart": Link(operation_id="getCart"),
    },
    ("checkout", "201"): {
        "GetOrder": Link(operation_id="getOrder", parameters={"order_id": "$response.body#/id"}),
        "RefundOrder": Link(operation_id="adminRefundOrder", parameters={"order_id": "$response.body#/id"}),
    },
    ("setSellerWebhook", "200"): {"GetSellerWebhook": Link(operation_id="getSellerWebhook")},
}
"""OpenAPI links: how one operation's answer feeds the next (schemathesis' stateful testing follows them)."""


def add_links(openapi: OpenAPI) -> None:
    """Attach `_LINKS` to the responses they start from."""
    for operation in _operations(openapi):
        for (operation_id, status), links in _LINKS.items():
            response = (operation.responses or {}).get(status)
            if operation.operation_id == operation_id and isinstance(response, OpenAPIResponse):
                response.links = {**(response.links or {}), **links}


def _problem_response(status: int) -> OpenAPIResponse:
    return OpenAPIResponse(
        description=_DESCRIPTIONS.get(status, "An error (problem+json)."),
        content={
            PROBLEM_JSON: OpenAPIMediaType(schema=Reference(ref=f"#/components/schemas/{Problem.__name__}"))
        },
    )
