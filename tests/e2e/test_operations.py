"""What operators and API consumers rely on: health, the docs and the OpenAPI schema."""

from __future__ import annotations

from .helpers import PROBLEM_JSON


def test_liveness(client):
    r = client.get("/health/live")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


def test_readiness_checks_the_database(client):
    r = client.get("/health/ready")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


def test_docs_are_an_html_page_over_the_schema(client):
    r = client.get("/docs")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert "/schema/openapi.json" in r.text or "openapi" in r.text.lower()


def test_the_schema_is_openapi_3_1(client):
    r = client.get("/schema/openapi.json")
    assert r.status_code == 200
    schema = r.json()
    assert schema["openapi"].startswith("3.1")
    paths = schema["paths"]
    for path, methods in {
        "/api/v1/auth/register": {"post"},
        "/api/v1/auth/token": {"post"},
        "/api/v1/me": {"get"},
        "/api/v1/items": {"get", "post"},
        "/api/v1/items/{item_id}": {"get", "patch", "delete"},
        "/health/live": {"get"},
        "/health/ready": {"get"},
    }.items():
        assert methods <= set(paths[path]), path


def _operations(schema):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if method in {"get", "put", "post", "delete", "patch", "options", "head", "trace"}:
                yield path, method, operation


def test_every_documented_error_is_problem_json(client):
    schema = client.get("/schema/openapi.json").json()
    problem = schema["components"]["schemas"]["Problem"]
    assert {"type", "title", "status", "detail", "instance", "trace_id"} <= set(problem["required"])
    for path, method, operation in _operations(schema):
        statuses = operation["responses"]
        assert "500" in statuses, (path, method)
        for status, response in statuses.items():
            if status[0] in "45":
                assert set(response["content"]) == {PROBLEM_JSON}, (path, method, status)


def test_every_operation_is_documented_for_clients(client):
    schema = client.get("/schema/openapi.json").json()
    ids = [operation.get("operationId") for _, _, operation in _operations(schema)]
    assert all(ids) and len(ids) == len(set(ids))


def test_operations_needing_a_token_say_so(client):
    schema = client.get("/schema/openapi.json").json()
    assert "bearer" in schema["components"]["securitySchemes"]
    for path, method in [
        ("/api/v1/me", "get"),
        ("/api/v1/items", "post"),
        ("/api/v1/items/{item_id}", "patch"),
        ("/api/v1/items/{item_id}", "delete"),
    ]:
        operation = schema["paths"][path][method]
        assert operation.get("security") == [{"bearer": []}], (path, method)
        assert "401" in operation["responses"]


def test_the_schema_links_each_created_object_to_the_operations_on_it(client):
    """OpenAPI links, which schemathesis' stateful phase follows (register -> token, item -> its operations)."""
    schema = client.get("/schema/openapi.json").json()
    by_id = {operation["operationId"]: (path, operation) for path, _, operation in _operations(schema)}
    links = {
        (operation_id, status): response["links"]
        for operation_id, (_, operation) in by_id.items()
        for status, response in operation["responses"].items()
        if "links" in response
    }
    assert {link["operationId"] for link in links[("createItem", "201")].values()} >= {
        "getItem",
        "updateItem",
        "archiveItem",
        "setCartQuantity",
    }
    assert {link["operationId"] for link in links[("register", "201")].values()} == {"issueToken"}
    assert {link["operationId"] for link in links[("checkout", "201")].values()} == {
        "getOrder",
        "adminRefundOrder",
    }
    for (source, status), targets in links.items():
        for link in targets.values():
            path, _ = by_id[link["operationId"]]  # every link leads to an operation that exists
            for name in link.get("parameters", {}):
                assert "{" + name + "}" in path, (source, status, link)
