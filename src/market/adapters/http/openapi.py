"""OpenAPI helpers: every documented error is a problem+json body."""

from __future__ import annotations

from litestar.openapi.datastructures import ResponseSpec

from .problems import PROBLEM_JSON, Problem

_DESCRIPTIONS = {
    400: "Malformed request or invalid parameter (problem+json).",
    401: "Missing, malformed or expired bearer token (problem+json).",
    403: "Authenticated, but the role may not do this (problem+json).",
    404: "No such object, or not visible to the caller (problem+json).",
    405: "Method not allowed (problem+json).",
    409: "Conflicts with the current state (problem+json).",
    413: "Body larger than 1 MiB (problem+json).",
    415: "Unsupported media type (problem+json).",
    422: "Valid JSON with invalid fields; `errors` names each one (problem+json).",
    500: "Our fault; `detail` quotes the trace id (problem+json).",
    503: "A dependency is down (problem+json).",
}


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
