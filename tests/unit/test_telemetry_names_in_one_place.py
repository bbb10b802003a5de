"""Every span, span-event, attribute and metric name is declared once, in market/telemetry/names.py, and every
metric instrument is created by the factory in market/telemetry/metrics.py. The check reads the source with
`ast`, so a name written as a literal anywhere else fails here before it can drift from the contract."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import opentelemetry.semconv._incubating.attributes as incubating_attributes
import opentelemetry.semconv.attributes as stable_attributes
import opentelemetry.semconv.metrics as stable_metrics

from market.telemetry import names

SRC = Path(__file__).resolve().parents[2] / "src" / "market"
NAMES = Path("telemetry") / "names.py"
INSTRUMENT_FACTORY = Path("telemetry") / "metrics.py"

# Calls whose first argument is a span, event or instrument name.
NAMED_CALLS = frozenset(
    {
        "start_as_current_span",
        "start_span",
        "add_event",
        "create_counter",
        "create_up_down_counter",
        "create_histogram",
        "create_gauge",
        "create_observable_counter",
        "create_observable_up_down_counter",
        "create_observable_gauge",
    }
)
# Calls whose string arguments (or dict keys) are attribute keys.
ATTRIBUTE_CALLS = frozenset({"set_attribute", "set_attributes"})
INSTRUMENT_CALLS = frozenset(name for name in NAMED_CALLS if name.startswith("create_"))


def _semconv_keys() -> frozenset[str]:
    keys: set[str] = set()
    for package in (stable_attributes, incubating_attributes, stable_metrics):
        for module_info in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
            module = importlib.import_module(module_info.name)
            keys.update(
                value
                for name, value in vars(module).items()
                if name.isupper() and isinstance(value, str) and "." in value
            )
    return frozenset(keys)


SEMCONV_KEYS = _semconv_keys()


def looks_like_telemetry_name(text: str) -> bool:
    return text.startswith("market.") or text in SEMCONV_KEYS


def _called_name(call: ast.Call) -> str | None:
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    if isinstance(call.func, ast.Name):
        return call.func.id
    return None


def _string(node: ast.AST | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def literal_names(source: str) -> list[tuple[int, str]]:
    """(line, literal) for every telemetry name written as a string literal in `source`."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            called = _called_name(node)
            if called in NAMED_CALLS and node.args and (text := _string(node.args[0])) is not None:
                found.append((node.lineno, text))  # any literal span/event/instrument name, whatever it says
            if called in ATTRIBUTE_CALLS and node.args and (text := _string(node.args[0])) is not None:
                found.append((node.lineno, text))
        # Attribute dicts are often built first and passed later: any dict key that looks like a name counts.
        if isinstance(node, ast.Dict):
            for key in node.keys:
                if (text := _string(key)) is not None and looks_like_telemetry_name(text):
                    found.append((node.lineno, text))
    return found


def instrument_creations(source: str) -> list[int]:
    return [
        node.lineno
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call) and _called_name(node) in INSTRUMENT_CALLS
    ]


def _modules(root: Path) -> list[tuple[Path, str]]:
    return [(path.relative_to(root), path.read_text()) for path in sorted(root.rglob("*.py"))]


def test_no_telemetry_name_is_written_as_a_literal_outside_names_py() -> None:
    offenders = [
        f"{path}:{line}: {text!r}"
        for path, source in _modules(SRC)
        if path != NAMES
        for line, text in literal_names(source)
    ]
    assert offenders == [], "declare these in market/telemetry/names.py:\n" + "\n".join(offenders)


def test_metric_instruments_are_created_only_by_the_factory_in_metrics_py() -> None:
    offenders = [
        f"{path}:{line}"
        for path, source in _modules(SRC)
        if path != INSTRUMENT_FACTORY
        for line in instrument_creations(source)
    ]
    assert offenders == [], "create instruments through market.telemetry.metrics:\n" + "\n".join(offenders)


def test_the_scan_finds_literal_span_names_attribute_keys_and_instruments() -> None:
    """The checks above can fail: each kind of literal they look for is found in a sample."""
    sample = (
        'tracer.start_as_current_span("checkout.place_order")\n'
        'span.set_attribute("market.checkout.outcome", 1)\n'
        'span.add_event("market.item.viewed")\n'
        'attributes = {"http.request.method": "GET", "market.item.id": 1, "unrelated": 2}\n'
        'meter.create_counter("market.orders.completed")\n'
    )
    assert [text for _, text in literal_names(sample)] == [
        "checkout.place_order",
        "market.checkout.outcome",
        "market.item.viewed",
        "http.request.method",
        "market.item.id",
        "market.orders.completed",
    ]
    assert instrument_creations(sample) == [5]


# The names taken from opentelemetry.semconv, as TELEMETRY.md spells them: the wire names do not follow the package.
CONTRACT = {
    "SERVICE_NAME": "service.name",
    "SERVICE_VERSION": "service.version",
    "SERVICE_INSTANCE_ID": "service.instance.id",
    "DEPLOYMENT_ENVIRONMENT": "deployment.environment.name",
    "HTTP_REQUEST_METHOD": "http.request.method",
    "HTTP_REQUEST_METHOD_ORIGINAL": "http.request.method_original",
    "HTTP_ROUTE": "http.route",
    "HTTP_RESPONSE_STATUS_CODE": "http.response.status_code",
    "URL_PATH": "url.path",
    "URL_SCHEME": "url.scheme",
    "URL_FULL": "url.full",
    "USER_AGENT_ORIGINAL": "user_agent.original",
    "CLIENT_ADDRESS": "client.address",
    "SERVER_ADDRESS": "server.address",
    "SERVER_PORT": "server.port",
    "ERROR_TYPE": "error.type",
    "SESSION_ID": "session.id",
    "ENDUSER_ID": "enduser.id",
    "DB_SYSTEM_NAME": "db.system.name",
    "DB_OPERATION_NAME": "db.operation.name",
    "DB_QUERY_TEXT": "db.query.text",
    "DB_NAMESPACE": "db.namespace",
}


def test_the_names_taken_from_semconv_are_the_ones_the_contract_spells() -> None:
    assert {constant: getattr(names, constant) for constant in CONTRACT} == CONTRACT
    assert names.HTTP_SERVER_REQUEST_DURATION[0] == "http.server.request.duration"


def test_every_metric_the_service_declares_is_in_the_contract() -> None:
    """Operators learn the metric names from docs/TELEMETRY.md: an instrument declared in names.py (hence on
    /metrics and over OTLP) but missing there is a series nobody knows to chart or alert on."""
    contract = (SRC.parents[1] / "docs" / "TELEMETRY.md").read_text()
    declared = [
        value[0]
        for value in vars(names).values()
        if isinstance(value, tuple) and len(value) == 3 and all(isinstance(part, str) for part in value)
    ]
    assert len(declared) > 20  # the scan found the (name, unit, description) triples
    assert [name for name in declared if f"`{name}`" not in contract] == []
