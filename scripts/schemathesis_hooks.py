"""Schemathesis hooks for `make schemathesis`, loaded through SCHEMATHESIS_HOOKS by scripts/schemathesis_run.py.

`POST /api/v1/checkout` (and `POST /api/v1/admin/orders/{order_id}/refunds`) refuses a reused Idempotency-Key with a different body (422 `idempotency-key-reused`): that
is the contract, but generated requests draw keys from a small space ("0", "00", ...) and reuse them with other
bodies all the time, which a schema cannot prevent. Every generated case whose header is valid gets a key of its
own here, so that the 422 only ever means a validation mismatch. Headers generated to be invalid (a key that is too
long or missing) are left as they are, so that their refusal is still checked.

`POST /api/v1/sessions/{session_id}/events` takes events only for the caller's own session (its `X-Session-Id`):
schema-valid cases get the path's session id as their header, so that they reach the body's validation.
"""

from __future__ import annotations

import itertools
from typing import Any

import schemathesis
from schemathesis.core.parameters import ParameterLocation
from schemathesis.generation.modes import GenerationMode

IDEMPOTENCY_KEY = "Idempotency-Key"
_serial = itertools.count()


@schemathesis.hook("map_case").apply_to(operation_id="adminRefundOrder")
def fresh_refund_idempotency_key(context: Any, case: Any) -> Any:
    return fresh_idempotency_key(context, case)


@schemathesis.hook("map_case").apply_to(operation_id="checkout")
def fresh_idempotency_key(context: Any, case: Any) -> Any:
    headers = case.headers
    if not headers or IDEMPOTENCY_KEY not in headers:
        return case
    meta = case.meta
    header_info = meta.components.get(ParameterLocation.HEADER) if meta is not None else None
    if header_info is not None and header_info.mode is GenerationMode.NEGATIVE:
        return case
    headers[IDEMPOTENCY_KEY] = f"fuzz-{next(_serial)}"
    return case


@schemathesis.hook("map_case").apply_to(operation_id="addSessionEvents")
def own_session(context: Any, case: Any) -> Any:
    session_id = (case.path_parameters or {}).get("session_id")
    meta = case.meta
    modes = [info.mode for info in meta.components.values()] if meta is not None else []
    if session_id is None or any(mode is GenerationMode.NEGATIVE for mode in modes):
        return case
    case.headers = {**(case.headers or {}), "X-Session-Id": session_id}
    return case
