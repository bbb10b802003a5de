"""The tags a Sentry event carries about its request are bounded like the metrics: no made-up method."""

from __future__ import annotations

import pytest
import sentry_sdk

from market.telemetry import names
from market.telemetry.sentry import _describe


@pytest.mark.parametrize(("method", "tag"), [("POST", "POST"), ("FOOBAR", "_OTHER"), ("get", "_OTHER")])
def test_the_method_tag_is_the_standard_method_or_other(method, tag):
    scope = sentry_sdk.Scope()
    _describe(scope, None, "/api/v1/items", method)
    assert scope._tags[names.HTTP_REQUEST_METHOD] == tag
    assert scope._tags[names.HTTP_ROUTE] == "/api/v1/items"
