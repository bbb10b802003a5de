"""Query parameters of list filters: an unknown one is refused (400 naming it) rather than silently ignored,
since a misspelt filter would otherwise answer with everything."""

from __future__ import annotations

import re
import typing
import uuid
import weakref
from typing import Any

from litestar import Request
from litestar.constants import RESERVED_KWARGS
from litestar.enums import ParamType
from litestar.exceptions import ValidationException
from litestar.params import ParameterKwarg

from market.domain.analytics import parse_bounds
from market.domain.errors import ValidationFailed
from market.domain.orders import OrderFilter, OrderStatus

from .validation import strict_body

UUID_FORMAT = {"format": "uuid"}
"""`schema_extra` of an id filter: the schema says what the 400 enforces."""


def _query_parameters(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """The query parameters the handler declares, by their query names, with their annotations: not its
    dependencies, path parameters or Litestar's reserved names (`?user=...` must not pass as a filter)."""
    handler = request.route_handler
    not_query = set(handler.resolve_dependencies()) | set(request.path_params) | RESERVED_KWARGS
    declared: dict[str, Any] = {}
    for name, parameter in handler.parsed_fn_signature.parameters.items():
        if name in not_query:
            continue
        kwarg = parameter.kwarg_definition
        # `QueryParameter(name="from")`: the query name is the alias, not the Python name (`from_`).
        is_aliased = isinstance(kwarg, ParameterKwarg) and kwarg.param_type is ParamType.QUERY and kwarg.name
        declared[kwarg.name if is_aliased else name] = parameter.annotation
    return declared


def _takes_many(annotation: Any) -> bool:
    """Whether a parameter annotated so takes several values (`list[str] | None`)."""
    if typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    kinds = {typing.get_origin(arg) or arg for arg in (annotation, *typing.get_args(annotation))}
    return bool(kinds & {list, tuple, set, frozenset})


def _takes_text(annotation: Any) -> bool:
    """Whether a parameter annotated so takes any text (`str`, `str | None`), as opposed to a value of a kind
    (a status, a number, a time)."""
    if typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation is str or str in typing.get_args(annotation)


async def known_query_only(request: Request[Any, Any, Any]) -> None:
    """`before_request` hook: a 400 `invalid-parameter` problem naming every query parameter the handler
    does not take, every one sent as the text `null` that does not take text (Litestar reads `?status=null`
    as None for an optional status, msgspec's lax conversion, so the filter would silently be dropped and the
    list answer with everything), and every one-valued parameter sent more than once (`?status=a&status=b`
    would be read as the last one alone)."""
    declared = _query_parameters(request)
    unknown = sorted(set(request.query_params) - set(declared))
    nulls = sorted(
        name
        for name, value in request.query_params.items()
        if value == "null" and name in declared and not _takes_text(declared[name])
    )
    repeated = sorted(
        name
        for name in set(request.query_params) & set(declared)
        if len(request.query_params.getall(name)) > 1 and not _takes_many(declared[name])
    )
    bad = [{"key": name, "message": "is not a parameter of this list", "source": "query"} for name in unknown]
    bad += [{"key": name, "message": "is not a valid value", "source": "query"} for name in nulls]
    bad += [{"key": name, "message": "must be given once", "source": "query"} for name in repeated]
    if bad:
        raise ValidationException(
            "Unknown query parameters." if unknown else "Some filters are not valid.", extra=bad
        )


_WHOLE_NUMBER = re.compile(r"-?[0-9]+")
_integer_queries: weakref.WeakKeyDictionary[Any, tuple[str, ...]] = weakref.WeakKeyDictionary()
"""Per route handler: the query parameters it takes as integers (worked out on its first request)."""


def _takes_int(annotation: Any) -> bool:
    """Whether a parameter annotated so takes a whole number (`int`, `int | None`)."""
    if typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation is int or int in typing.get_args(annotation)


async def whole_numbers_only(request: Request[Any, Any, Any]) -> None:
    """A 400 `invalid-parameter` problem naming every integer query parameter whose text is not a whole
    number: Litestar converts query text with msgspec's lax rules, which read `limit=10.0` (and `1e1`) as 10."""
    # Litestar's automatic OPTIONS handler takes no query parameter, and (a plain HTTPRouteHandler, slotted) no
    # weak reference either.
    if not request.scope.get("query_string") or request.method == "OPTIONS":
        return
    handler = request.route_handler
    names = _integer_queries.get(handler)
    if names is None:
        declared = _query_parameters(request)
        names = _integer_queries[handler] = tuple(n for n, a in declared.items() if _takes_int(a))
    bad = [
        {"key": name, "message": "must be a whole number", "source": "query"}
        for name in names
        if any(not _WHOLE_NUMBER.fullmatch(value) for value in request.query_params.getall(name, ()))
    ]
    if bad:
        raise ValidationException("Some parameters are not valid.", extra=bad)


async def strict_input(request: Request[Any, Any, Any]) -> None:
    """The app's `before_request`: the strict body check, then `whole_numbers_only`."""
    await strict_body(request)
    await whole_numbers_only(request)


async def strict_request(request: Request[Any, Any, Any]) -> None:
    """`before_request` of the admin tools: the app's checks (a handler-level hook replaces the app's), then
    `known_query_only`."""
    await strict_input(request)
    await known_query_only(request)


def order_filter_of(
    status: str | None, buyer_id: str | None, seller_id: str | None, raw_from: str | None, raw_to: str | None
) -> OrderFilter:
    """The filter of an order list, or a 400 problem naming every bad parameter."""
    bad = [
        {"key": name, "message": "must be an id (a UUID)", "source": "query"}
        for name, value in (("buyer_id", buyer_id), ("seller_id", seller_id))
        if value is not None and _uuid(value) is None
    ]
    if bad:
        raise ValidationException("Some filters are not valid.", extra=bad)
    since, until = bounds_of(raw_from, raw_to)
    return OrderFilter(
        status=OrderStatus(status) if status else None,
        buyer_id=_uuid(buyer_id) if buyer_id else None,
        seller_id=_uuid(seller_id) if seller_id else None,
        since=since,
        until=until,
    )


def uuid_or_400(name: str, value: str | None) -> str | None:
    """The canonical id of an id filter (None when absent), or a 400 problem naming it."""
    if value is None:
        return None
    canonical = _uuid(value)
    if canonical is None:
        raise ValidationException(
            "A filter is not valid.",
            extra=[{"key": name, "message": "must be an id (a UUID)", "source": "query"}],
        )
    return canonical


def _uuid(value: str) -> str | None:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None


def bounds_of(raw_from: str | None, raw_to: str | None) -> tuple[Any, Any]:
    """The optional `from`/`to` bounds of a list, or a 400 problem naming the bad one."""
    try:
        return parse_bounds(raw_from, raw_to)
    except ValidationFailed as exc:
        raise ValidationException(
            "The bounds are not valid.",
            extra=[{"key": e.field, "message": e.message, "source": "query"} for e in exc.errors],
        ) from None
