"""Tables for a terminal: reports (`market report NAME`; the figures are the API's, field for field) and
accounts (`market users list`), and the one console every table of the `market` command is printed with."""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from typing import Any

from rich.console import Console, Group
from rich.style import Style
from rich.table import Table
from rich.text import Text

from market.domain import analytics as reports
from market.domain.users import User

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
"""C0, DEL and C1 (ESC among them), and Unicode's bidirectional controls, which reorder what follows them on
screen (after U+202E, `moc.elpmaxe@ecila` reads as `alice@example.com`)."""


def literal(value: str) -> str:
    """`value` with each control character written out (`\\xNN`, `\\uNNNN`): it reaches the terminal as text,
    never as a command to it nor as a reordering of what it shows."""
    return _CONTROL.sub(_written_out, value)


def _written_out(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


class LiteralConsole(Console):
    """A console that prints every string as the characters it holds. What the tables show is stored text that
    anyone can write (a search, an e-mail, a client event's fields): read as rich markup, `[/x]` would end the
    command in a MarkupError and `[link=...]` would print a hyperlink; `:name:` would become an emoji, and a raw
    ESC would reach the terminal. Every str a renderable holds (cells, titles, headers, lines) is turned into
    text here, in `render_str`; styles are given around it (column, row or title styles, `Styled`), never as
    markup or a `Text` built from stored values."""

    def render_str(
        self,
        text: str,
        *,
        style: str | Style = "",
        justify: Any = None,
        overflow: Any = None,
        emoji: bool | None = None,
        markup: bool | None = None,
        highlight: bool | None = None,
        highlighter: Any = None,
    ) -> Text:
        return Text(literal(text), style=style, justify=justify, overflow=overflow)


def console() -> Console:
    """The console the `market` command prints its tables with. Piped (`| grep`), rows keep their full width
    instead of being cut to 80 columns with ellipses."""
    return LiteralConsole(width=None if sys.stdout.isatty() else 1000)


def _percent(fraction: float) -> str:
    return f"{fraction * 100:.1f} %"


def _pairs(title: str, rows: list[tuple[str, Any]]) -> Table:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column("", style="bold")
    table.add_column("", justify="right")
    for name, value in rows:
        table.add_row(name, str(value))
    return table


def _queries(title: str, counts: tuple[reports.QueryCount, ...]) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("query")
    table.add_column("count", justify="right")
    for entry in counts:
        table.add_row(entry.query, str(entry.count))
    return table


def render(report: reports.Report) -> Group:
    period = f"{report.start:%Y-%m-%d %H:%M:%S} to {report.end:%Y-%m-%d %H:%M:%S} UTC"
    return Group(period, _tables(report))


def _tables(report: reports.Report) -> Group:
    match report:
        case reports.FunnelReport():
            table = Table(title="Funnel", title_justify="left")
            table.add_column("step")
            table.add_column("sessions", justify="right")
            table.add_column("conversion", justify="right")
            for step in report.steps:
                table.add_row(step.name, str(step.sessions), _percent(step.conversion))
            table.add_section()
            table.add_row("overall", "", _percent(report.overall_conversion))
            return Group(table)
        case reports.SearchReport():
            return Group(
                _pairs(
                    "Searches",
                    [
                        ("searches", report.searches),
                        ("without results", report.no_results),
                        ("no-results rate", _percent(report.no_results_rate)),
                        ("success rate", _percent(report.success_rate)),
                    ],
                ),
                _queries("Top queries", report.top_queries),
                _queries("Top queries without results", report.top_no_result_queries),
            )
        case reports.PaymentsReport():
            methods = Table(title="By method", title_justify="left")
            for column in ("method", "attempts", "success rate"):
                methods.add_column(column, justify="left" if column == "method" else "right")
            for m in report.by_method:
                methods.add_row(m.method, str(m.attempts), _percent(m.success_rate))
            amounts = Table(title="Succeeded amounts (minor units)", title_justify="left")
            for column in ("currency", "payments", "sum", "mean", "p50", "p95"):
                amounts.add_column(column, justify="left" if column == "currency" else "right")
            for a in report.amounts:
                amounts.add_row(
                    a.currency,
                    *(str(v) for v in (a.count, a.sum.cents, a.mean.cents, a.p50.cents, a.p95.cents)),
                )
            refunds = Table(title="Refunds (minor units)", title_justify="left")
            for column in ("currency", "refunds", "refunded", "net"):
                refunds.add_column(column, justify="left" if column == "currency" else "right")
            for r in report.refunds:
                refunds.add_row(r.currency, str(r.refunds), str(r.refunded.cents), str(r.net.cents))
            return Group(
                _pairs(
                    "Payments",
                    [
                        ("attempts", report.attempts),
                        ("succeeded", report.succeeded),
                        ("declined", report.declined),
                        ("errored", report.errored),
                        ("success rate", _percent(report.success_rate)),
                    ],
                ),
                methods,
                amounts,
                refunds,
            )
        case reports.CartsReport():
            return Group(
                _pairs(
                    "Carts",
                    [
                        ("carts with items", report.carts_with_items),
                        ("checked out", report.checked_out),
                        (f"abandoned (after {report.abandon_after_s} s)", report.abandoned),
                        ("abandonment rate", _percent(report.abandonment_rate)),
                    ],
                )
            )
        case reports.SessionsReport():
            return Group(
                _pairs(
                    "Sessions",
                    [
                        ("sessions", report.sessions),
                        ("median duration", f"{report.median_duration_s:.1f} s"),
                        ("p95 duration", f"{report.p95_duration_s:.1f} s"),
                        ("events per session", f"{report.events_per_session:.2f}"),
                    ],
                )
            )
    raise TypeError(f"not a report: {report!r}")


def users_table(users: Sequence[User]) -> Table:
    """Accounts, one row each."""
    table = Table(title=f"{len(users)} accounts", title_justify="left")
    for column in ("id", "email", "role", "status", "created_at"):
        table.add_column(column, no_wrap=column in ("id", "created_at"))
    for user in users:
        table.add_row(
            user.id, user.email, user.role.value, user.status.value, f"{user.created_at:%Y-%m-%d %H:%M:%S}"
        )
    return table
