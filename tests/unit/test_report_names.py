"""The business reports are named once, by domain.analytics.ReportName: the use case runs each of them, the
CLI offers exactly them, and no module lists the names again by hand."""

from __future__ import annotations

import ast
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
import pytest

from market.application.analytics import run_report
from market.cli import main
from market.domain.analytics import Period, ReportName
from market.domain.errors import NotFound

SRC = Path(__file__).resolve().parents[2] / "src" / "market"
NOW = datetime(2026, 1, 31, tzinfo=UTC)
PERIOD = Period(NOW - timedelta(days=30), NOW)


class RecordingReports:
    """Answers each report with the name of the method that was asked."""

    def __getattr__(self, method: str) -> Any:
        async def answer(*args: object) -> str:
            return method

        return answer


class FixedClock:
    def now(self) -> datetime:
        return NOW


async def run(name: str) -> object:
    return await run_report(
        name, PERIOD, reports=RecordingReports(), clock=FixedClock(), abandon_after=timedelta(hours=24)
    )


@pytest.mark.parametrize("name", list(ReportName))
async def test_every_report_name_runs_the_report_of_that_name(name: ReportName) -> None:
    assert await run(name) == name.value
    assert await run(name.value) == name.value  # the plain string, as the CLI and the path give it


async def test_an_unknown_report_name_is_not_found_and_the_message_lists_every_name() -> None:
    with pytest.raises(NotFound) as raised:
        await run("revenue")
    assert str(raised.value).endswith("try funnel, search, payments, carts or sessions.")


def test_the_cli_report_command_offers_exactly_the_report_names() -> None:
    (argument,) = [p for p in main.commands["report"].params if isinstance(p, click.Argument)]
    assert isinstance(argument.type, click.Choice)
    assert list(argument.type.choices) == [name.value for name in ReportName]


def _lists_of_report_names(source: str) -> list[int]:
    """Lines of tuples, lists, sets and subscripts (Literal[...]) holding three report names or more."""
    names = {name.value for name in ReportName}
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Tuple | ast.List | ast.Set):
            strings = {e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)}
            if len(strings & names) >= 3:
                lines.append(node.lineno)
    return lines


def test_no_module_lists_the_report_names_by_hand() -> None:
    offenders = [
        f"{path.relative_to(SRC)}:{line}"
        for path in sorted(SRC.rglob("*.py"))
        for line in _lists_of_report_names(path.read_text())
    ]
    assert offenders == [], "derive these from domain.analytics.ReportName:\n" + "\n".join(offenders)


def test_the_scan_finds_a_hand_written_list_of_report_names() -> None:
    assert _lists_of_report_names(
        'REPORTS = ("funnel", "search", "payments")\nx = Literal["carts", "a"]'
    ) == [1]
