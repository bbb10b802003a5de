"""The `market` command."""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from market.commands import settings_or_exit as _settings
from market.commands import with_database as _with_database
from market.domain.analytics import ReportName, report_names_in_words

# `market backup …` lives in the operations wing; that module imports only click and the config at start.
from market.ops.backups.cli import SCHEMA_VERSIONS, backup

if TYPE_CHECKING:
    import uvicorn

    from market.bootstrap import CommandUseCases

T = TypeVar("T")


@click.group()
@click.version_option(package_name="market")
@click.pass_context
def main(ctx: click.Context) -> None:
    """market: an async marketplace API that is observable by design."""
    ctx.meta[SCHEMA_VERSIONS] = _schema_versions


def _schema_versions() -> list[str]:
    from market.adapters.db.migrations import MIGRATIONS

    return [migration.version for migration in MIGRATIONS]


@main.command()
@click.option("--host", default=None, help="Interface to bind [MARKET_HOST, default 127.0.0.1].")
@click.option("--port", type=int, default=None, help="Port [MARKET_PORT, default 8000].")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True, help="Worker processes.")
@click.option("--reload", is_flag=True, help="Restart on code changes (development).")
def serve(host: str | None, port: int | None, workers: int, reload: bool) -> None:
    """Serve the API. Migrations are applied at start-up."""
    import os

    import uvicorn

    from market.bootstrap import configure_logging, warn_if_sandbox_exposed
    from market.telemetry.logs import logging_config
    from market.telemetry.prometheus import GROUP_VARIABLE, new_process_group
    from market.telemetry.setup import metrics_directory

    settings = _settings()
    bind = host or settings.server.host
    configure_logging(settings)
    warn_if_sandbox_exposed(settings, bind)  # here, once, not in every worker
    # This server's workers merge each other's metrics, and no other server's (replicas sharing MARKET_VAR_DIR).
    os.environ[GROUP_VARIABLE] = new_process_group()
    # The workers read their settings again: --host/--port must reach them (the default public URL and the
    # availability probe's address are built from them).
    if host:
        os.environ["MARKET_HOST"] = host
    if port is not None:
        os.environ["MARKET_PORT"] = str(port)
    metrics_directory(settings).clear()  # last run's worker snapshots must not be added to this run's
    server = dict(
        app="market.bootstrap:app_factory",
        factory=True,
        host=bind,
        port=port if port is not None else settings.server.port,
        workers=workers,
        reload=reload,
        log_config=logging_config(settings.telemetry.log_level),
        access_log=False,  # the edge middleware writes them, inside each request's span
        **server_stack(),
        proxy_headers=False,
        timeout_keep_alive=settings.server.keep_alive_s,
        timeout_graceful_shutdown=5,
    )
    if workers > 1 and not reload:
        _serve_workers(uvicorn.Config(**server))
    else:
        uvicorn.run(**server)


def _serve_workers(config: uvicorn.Config) -> None:
    """uvicorn.run's path for several workers, keeping what it drops: when a worker fails to start (the
    database unreachable, say), uvicorn stops every worker and exits 0, so a process manager would take the
    failure for a clean stop and not restart it. Here it exits 3, uvicorn's own status for a failed start, as
    it does with one worker."""
    from uvicorn.config import STARTUP_FAILURE
    from uvicorn.supervisors import Multiprocess

    supervisor = Multiprocess(config, sockets=[config.bind_socket()])
    supervisor.run()
    if any(process.exitcode == STARTUP_FAILURE for process in supervisor.processes):
        sys.exit(STARTUP_FAILURE)


def server_stack() -> dict[str, Any]:
    """The production stack: uvicorn on uvloop with the httptools parser (installed with market; asyncio and
    h11 only where they are missing, e.g. uvloop on Windows), each parser answering a request it cannot parse
    with the malformed-request problem (adapters/http/protocols.py)."""
    try:
        import uvloop  # noqa: F401

        loop = "uvloop"
    except ImportError:
        loop = "asyncio"
    from market.adapters.http.protocols import http_protocol

    return {"loop": loop, "http": http_protocol()}


@main.group()
def db() -> None:
    """Database schema and demo data."""


@db.command()
def migrate() -> None:
    """Apply pending migrations."""
    settings = _settings()

    async def work(database: Any) -> list[str]:
        return await database.migrate()

    applied = _with_database(settings, work)
    click.echo(f"applied: {', '.join(applied)}" if applied else "schema is up to date")


SHOWN_SIGN_INS = 10
"""`market db seed` prints this many of the sign-ins it made (all share one password and one pattern)."""


def _email_domain(_: click.Context, __: click.Parameter, value: str) -> str:
    domain = value.strip().lower()
    labels = domain.split(".")
    if len(domain) > 200 or len(labels) < 2 or not all(_DOMAIN_LABEL.match(label) for label in labels):
        raise click.BadParameter("must be a domain name such as demo.example.com")
    return domain


_DOMAIN_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


@db.command()
@click.option("--sellers", type=click.IntRange(1, 100_000), default=20, show_default=True)
@click.option("--items", type=click.IntRange(0, 10_000_000), default=1000, show_default=True)
@click.option(
    "--email-domain",
    default="demo.market.dev",
    show_default=True,
    callback=_email_domain,
    help="Domain of the sellers' e-mail addresses (sellerN-RUN@DOMAIN).",
)
def seed(sellers: int, items: int, email_domain: str) -> None:
    """Insert realistic demo sellers and items, and print the sign-ins made (all sellers' password:
    demo-password-123)."""
    from argon2 import PasswordHasher

    from market.adapters.db.seed import DEMO_PASSWORD, Seeded, seed_demo_data

    settings = _settings()
    password_hash = PasswordHasher().hash(DEMO_PASSWORD)

    async def work(database: Any) -> Seeded:
        await database.migrate()
        return await seed_demo_data(
            database, sellers=sellers, items=items, password_hash=password_hash, email_domain=email_domain
        )

    started = time.perf_counter()
    seeded = _with_database(settings, work)
    click.echo(f"sign in as any seeded seller with the password {DEMO_PASSWORD}:")
    for email in seeded.seller_emails[:SHOWN_SIGN_INS]:
        click.echo(f"  {email}")
    if len(seeded.seller_emails) > SHOWN_SIGN_INS:
        click.echo(
            f"  ... and {len(seeded.seller_emails) - SHOWN_SIGN_INS} more of the same pattern"
            " (`market users list` shows them all)"
        )
    click.echo(
        f"seeded {len(seeded.seller_emails)} sellers and {seeded.items} items"
        f" in {time.perf_counter() - started:.1f} s"
    )


@main.group()
def payments() -> None:
    """Payments."""


@payments.command()
def reconcile() -> None:
    """Settle orders whose payment outcome is unknown (pending_payment, processing) from the provider's records."""
    from market.bootstrap import command_use_cases

    settings = _settings()

    async def work(database: Any) -> dict[str, int]:
        await database.migrate()
        async with command_use_cases(settings, database) as use_cases:
            return await use_cases.reconcile_payments()

    counts = _with_database(settings, work)
    click.echo(", ".join(f"{outcome}: {n}" for outcome, n in counts.items()))


@main.group()
def users() -> None:
    """Accounts."""


def _read_password() -> str:
    """A new password: prompted for twice on a terminal, else the first line of stdin (scripts, pipes)."""
    if sys.stdin.isatty():
        return str(click.prompt("Password", hide_input=True, confirmation_prompt=True))
    return sys.stdin.readline().rstrip("\r\n")


def _run_account_command(work: Callable[[CommandUseCases], Awaitable[T]]) -> T:
    """Run `work(use_cases)` on a migrated database; a refused change is one line on stderr, no traceback."""
    from market.bootstrap import command_use_cases
    from market.domain.errors import DomainError, ValidationFailed

    settings = _settings()

    async def with_use_cases(database: Any) -> T:
        await database.migrate()
        async with command_use_cases(settings, database) as use_cases:
            return await work(use_cases)

    try:
        return _with_database(settings, with_use_cases)
    except ValidationFailed as exc:
        click.echo("market: " + "; ".join(f"{e.field} {e.message}" for e in exc.errors), err=True)
        sys.exit(2)
    except DomainError as exc:
        click.echo(f"market: {exc.detail}", err=True)
        sys.exit(1)


@users.command("create-admin")
@click.option("--email", required=True)
@click.option("--display-name", default="Administrator", show_default=True)
def create_admin(email: str, display_name: str) -> None:
    """Create an admin. The password is read from a prompt, or from stdin when it is not a terminal."""
    from market.application.accounts import Register

    password = _read_password()
    user = _run_account_command(
        lambda use_cases: use_cases.register_user(
            Register(email, password, display_name, "admin"), allow_admin=True
        )
    )
    click.echo(f"created admin {user.email} ({user.id})")


@users.command("set-password")
@click.option("--email", required=True)
def set_password(email: str) -> None:
    """Set a user's password and revoke all their tokens. The password is read from a prompt, or from stdin
    when it is not a terminal."""
    password = _read_password()
    user = _run_account_command(lambda use_cases: use_cases.set_password(email, password))
    click.echo(f"password set for {user.email}; their tokens are revoked")


@users.command()
@click.option("--email", required=True)
def disable(email: str) -> None:
    """Disable an account: its tokens stop working at once and it can no longer sign in."""
    user = _run_account_command(lambda use_cases: use_cases.disable_user(email))
    click.echo(f"disabled {user.email}; their tokens are revoked")


@users.command()
@click.option("--email", required=True)
def enable(email: str) -> None:
    """Enable a disabled account again (it signs in afresh; its old tokens stay revoked)."""
    user = _run_account_command(lambda use_cases: use_cases.enable_user(email))
    click.echo(f"enabled {user.email}")


@users.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_accounts(as_json: bool) -> None:
    """List every account, oldest first."""
    accounts = _run_account_command(lambda use_cases: use_cases.list_users())
    if as_json:
        import msgspec

        click.echo(
            msgspec.json.encode(
                [
                    {
                        "id": user.id,
                        "email": user.email,
                        "display_name": user.display_name,
                        "role": user.role.value,
                        "status": user.status.value,
                        "created_at": user.created_at,
                        "last_login_at": user.last_login_at,
                    }
                    for user in accounts
                ]
            ).decode()
        )
        return
    from market.adapters.terminal import console, users_table

    console().print(users_table(accounts))


@main.command(help=f"Print a business report: {report_names_in_words()}.")
@click.argument("name", type=click.Choice([name.value for name in ReportName]))
@click.option("--from", "from_", metavar="TIME", help="RFC 3339 time or date [default: 30 days before --to].")
@click.option("--to", metavar="TIME", help="RFC 3339 time or date [default: now].")
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON instead of tables.")
def report(name: str, from_: str | None, to: str | None, as_json: bool) -> None:
    """Print a business report (the help text is derived from ReportName)."""
    from market.bootstrap import command_use_cases
    from market.domain.analytics import parse_period
    from market.domain.errors import ValidationFailed

    settings = _settings()

    async def work(database: Any) -> Any:
        await database.migrate()
        async with command_use_cases(settings, database) as use_cases:
            return await use_cases.run_report(name, parse_period(from_, to, use_cases.now()))

    try:
        result = _with_database(settings, work)
    except ValidationFailed as exc:
        click.echo("market: " + "; ".join(f"--{e.field} {e.message}" for e in exc.errors), err=True)
        sys.exit(2)
    if as_json:
        import msgspec

        from market.serializers.reports import report_out

        click.echo(msgspec.json.encode(report_out(result)).decode())
        return
    from market.adapters.terminal import console, render

    console().print(render(result))


@main.group()
def analytics() -> None:
    """Analytics events."""


@analytics.command()
@click.option(
    "--older-than-days",
    type=click.IntRange(1, 36500),
    default=None,
    help="Retention to apply [MARKET_ANALYTICS_RETENTION_DAYS, default 400].",
)
def prune(older_than_days: int | None) -> None:
    """Delete analytics events older than the retention period."""
    from datetime import timedelta

    from market.bootstrap import command_use_cases

    settings = _settings()
    days = older_than_days or settings.analytics.retention_days

    async def work(database: Any) -> int:
        await database.migrate()
        async with command_use_cases(settings, database) as use_cases:
            return await use_cases.prune_events(timedelta(days=days))

    deleted = _with_database(settings, work)
    click.echo(f"deleted {deleted} analytics events older than {days} days")


main.add_command(backup)

from market.adapters.sessions_cli import sessions  # noqa: E402

main.add_command(sessions)
