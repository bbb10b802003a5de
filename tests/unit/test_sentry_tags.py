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


def test_an_event_names_its_session_and_links_to_its_page(monkeypatch):
    from market.telemetry import request_context, sentry

    monkeypatch.setattr(sentry, "_session_page", "http://market.example/admin/sessions/{session_id}")
    token = request_context.begin("shopper-42", "a" * 32)
    try:
        scope = sentry_sdk.Scope()
        _describe(scope, None, "/api/v1/items", "GET")
    finally:
        request_context.end(token)
    page = "http://market.example/admin/sessions/shopper-42"
    assert scope._tags[names.SESSION_ID] == "shopper-42"
    assert scope._tags[names.SESSION_PAGE_URL] == page
    assert scope._contexts[names.SENTRY_SESSION_CONTEXT] == {"id": "shopper-42", "url": page}


def test_outside_a_request_an_event_names_no_session():
    scope = sentry_sdk.Scope()
    _describe(scope, None, None, None)
    assert names.SESSION_ID not in scope._tags
