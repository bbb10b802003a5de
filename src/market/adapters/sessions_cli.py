"""`market sessions show SESSION_ID` and `market sessions find --trace-id|--order-id|--email|--user-id`: session
replay for an operator's terminal. `--json` prints exactly what the API answers."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Any

import click


@click.group()
def sessions() -> None:
    """Session replay: find a session, print its timeline."""


def _run(work: Any) -> Any:
    from market.commands import settings_or_exit, with_database

    settings = settings_or_exit()

    async def with_store(database: Any) -> Any:
        from market.adapters.db.repositories import PiccoloReadRepositories
        from market.adapters.db.sessions import SqlSessionStore

        await database.migrate()
        return await work(SqlSessionStore(database), PiccoloReadRepositories(database), settings)

    return with_database(settings, with_store)


@sessions.command()
@click.argument("session_id")
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON instead of a table.")
def show(session_id: str, as_json: bool) -> None:
    """Print one session's timeline: its requests and business events in time order."""
    from market.adapters.http.sessions import SessionLinks, timeline_out
    from market.application.sessions import session_timeline
    from market.domain.errors import NotFound

    async def work(store: Any, _repos: Any, settings: Any) -> Any:
        links = SessionLinks(settings.sessions.trace_url_template, settings.sessions.sentry_url_template)
        return await session_timeline(session_id, store=store), links

    try:
        timeline, links = _run(work)
    except NotFound as exc:
        click.echo(f"market: {exc.detail}", err=True)
        sys.exit(1)
    if as_json:
        import msgspec

        click.echo(msgspec.json.encode(timeline_out(timeline)).decode())
        return
    _console().print(timeline_table(timeline, links))


@sessions.command()
@click.option("--trace-id", help="A trace id of any of its requests or events.")
@click.option("--order-id", help="An order it checked out.")
@click.option("--email", help="The e-mail of its signed-in user.")
@click.option("--user-id", help="The id of its signed-in user.")
@click.option("--errors-only", is_flag=True, help="Only sessions with a 5xx answer.")
@click.option("--from", "from_", metavar="TIME", help="RFC 3339 time or date [default: 30 days before --to].")
@click.option("--to", metavar="TIME", help="RFC 3339 time or date [default: now].")
@click.option("--limit", type=click.IntRange(1, 100), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON instead of a table.")
def find(
    trace_id: str | None,
    order_id: str | None,
    email: str | None,
    user_id: str | None,
    errors_only: bool,
    from_: str | None,
    to: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Find sessions, most recently active first (as `GET /api/v1/admin/sessions`)."""
    from market.adapters.http.sessions import page_out
    from market.application.sessions import find_sessions
    from market.domain.analytics import parse_period
    from market.domain.errors import ValidationFailed
    from market.domain.sessions import SessionFilter

    async def work(store: Any, repos: Any, _settings: Any) -> Any:
        period = parse_period(from_, to, datetime.now(UTC))
        criteria = SessionFilter(
            user_id=user_id,
            order_id=order_id,
            trace_id=trace_id.lower() if trace_id else None,
            has_errors=True if errors_only else None,
            start=period.start,
            end=period.end,
        )
        return await find_sessions(criteria, limit, None, email=email, store=store, users=repos.users)

    try:
        page = _run(work)
    except ValidationFailed as exc:
        click.echo("market: " + "; ".join(f"--{e.field} {e.message}" for e in exc.errors), err=True)
        sys.exit(2)
    if as_json:
        import msgspec

        click.echo(msgspec.json.encode(page_out(page)).decode())
        return
    _console().print(sessions_table(page.items))


def _console() -> Any:
    from market.adapters.terminal import console

    return console()


def sessions_table(items: Any) -> Any:
    from rich.styled import Styled
    from rich.table import Table

    table = Table(title="Sessions (most recently active first)", title_justify="left")
    for column in ("session", "user", "started (UTC)", "last seen (UTC)", "requests", "errors", "last route"):
        table.add_column(column, justify="right" if column in ("requests", "errors") else "left")
    for s in items:
        table.add_row(
            s.session_id,
            s.user_id or "—",
            f"{s.started_at:%Y-%m-%d %H:%M:%S}",
            f"{s.ended_at:%Y-%m-%d %H:%M:%S}",
            str(s.requests),
            Styled(str(s.errors), "bold red") if s.errors else "0",
            s.last_route or "—",
        )
    return table


def timeline_table(timeline: Any, links: Any) -> Any:
    from rich.styled import Styled
    from rich.table import Table

    # Stored text (the session id, client events' names and fields) is given as str, styled around it: the
    # console prints every str literally (adapters/terminal.py).
    table = Table(
        title=f"Session {timeline.session_id} · user {timeline.user_id or '—'}"
        f" · {timeline.started_at:%Y-%m-%d %H:%M:%S} – {timeline.ended_at:%H:%M:%S} UTC",
        title_justify="left",
        title_style="bold",
    )
    for column in ("at (UTC)", "what", "status", "ms", "trace id", "details"):
        table.add_column(column, justify="right" if column in ("status", "ms") else "left")
    for entry in timeline.entries:
        f = entry.fields
        at = f"{entry.at:%H:%M:%S.%f}"[:-3]
        if entry.kind == "request":
            failing = (f.get("status") or 0) >= 500
            details = " ".join(
                part
                for part in (
                    f.get("problem_type") or "",
                    f"sentry {f['sentry_event_id']}" if f.get("sentry_event_id") else "",
                    links.trace(f.get("trace_id")) or "",
                    links.sentry(f.get("sentry_event_id")) or "",
                )
                if part
            )
            table.add_row(
                at,
                f"{f.get('method')} {f.get('route') or '(no route)'}",
                str(f.get("status")),
                f"{f.get('duration_ms', 0):.1f}",
                f.get("trace_id") or "",
                details,
                style="bold red" if failing else None,
            )
        else:
            shown = {k: v for k, v in f.items() if k not in ("name", "source", "trace_id") and v is not None}
            table.add_row(
                at,
                Styled(f"  · {f.get('name')} ({f.get('source')})", "cyan"),
                "",
                "",
                f.get("trace_id") or "",
                " ".join(f"{k}={v}" for k, v in shown.items()),
            )
    return table
