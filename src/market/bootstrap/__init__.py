"""The composition root: the one place that builds adapters and wires them to the use cases. By reason to change:
- `adapters.py`: settings to adapters (the `Ports` bundle, gateways, admin ports, the alert monitor);
- `use_cases.py`: the use cases bound to their ports, once (controllers' and commands');
- `background.py`: the work beside the requests (reconciliation, metrics sharing, telemetry flush);
- `app.py`: the ASGI app and its lifespan, which starts and stops all of it in order.

How a controller gets a use case (follow this when adding a route):
1. The use case is an async function in `market.application`: its input first, then its ports keyword-only
   (`async def view_cart(buyer, *, uow)`). Next to it, a `Callable` alias names it as controllers see it, ports
   bound: `ViewCart = Callable[[User], Awaitable[Cart]]` (the CamelCase of the function's name).
2. `bind_use_cases` (use_cases.py) binds it once, with its ports (`BoundUseCase`, a `functools.partial` whose
   repr hides the ports), under the function's name;
   wrappers that add business spans or other telemetry are applied here too (adapters/telemetry/use_cases.py),
   so the use case never imports OpenTelemetry.
3. `create_app` registers every bound use case as a Litestar dependency of the same name
   (`Provide`, one per use case), so a handler asks for it by parameter name and alias, marked explicitly
   (`litestar.di.NamedDependency`; Litestar 3 drops inferred dependencies, and the tests turn Litestar's
   deprecation warnings into errors):
   `async def get_cart(self, user: NamedDependency[User], view_cart: NamedDependency[ViewCart]) -> CartOut:`.
   Path parameters, query aliases and bodies are marked too (`FromPath[str]`, `QueryParameter(name="from")`,
   `JSONBody[...]`). The controller parses, calls one use case and shapes the response; it never sees a port.
A test (tests/unit/test_use_case_wiring.py) fails when a handler asks for a use case that is not bound, or one
is bound that no handler asks for. Inside a use case, domain events go through the unit of work
(`await work.collect(events, now)`): recorded with the work, published only after it commits.
"""

from __future__ import annotations

from .adapters import (
    Ports,
    SystemClock,
    UuidGenerator,
    build_admin_ports,
    build_ports,
    configure_logging,
    warn_if_sandbox_exposed,
)
from .app import app_factory, build_app
from .use_cases import BoundUseCase, CommandUseCases, bind_use_cases, command_use_cases

__all__ = [
    "BoundUseCase",
    "CommandUseCases",
    "Ports",
    "SystemClock",
    "UuidGenerator",
    "app_factory",
    "bind_use_cases",
    "build_admin_ports",
    "build_app",
    "build_ports",
    "command_use_cases",
    "configure_logging",
    "warn_if_sandbox_exposed",
]
