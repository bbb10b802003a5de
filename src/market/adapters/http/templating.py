"""The HTML pages' Jinja2 environment: templates/ (autoescaped) and the stylesheet in static/.

Autoescaping is on for every template, and nothing in them is marked `|safe`: search queries, e-mail addresses,
paths and the period typed into the URL are user input, and reach the page only as escaped text. The few
formatting rules the pages share are filters here, so the templates hold markup and the Python holds numbers.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.template import TemplateConfig

from market.ops.alerting.monitor import format_value

TEMPLATES_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"
STATIC_PATH = "/admin/static"
"""Where STATIC_DIR is served (under the dashboard's router, with its security headers)."""
STYLESHEET = f"{STATIC_PATH}/dashboard.css"


def thousands(value: int) -> str:
    """12 345: grouped by a narrow no-break space, in no locale's way."""
    return f"{value:,}".replace(",", "\u202f")


def percent(fraction: float) -> str:
    """0.1234 → 12.3 %."""
    return f"{fraction * 100:.1f} %"


def duration(seconds: float) -> str:
    """Seconds in the largest unit that keeps the number readable: 42.0 s, 3.5 min, 2.0 h."""
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.1f} s"


def utc(moment: datetime | None) -> str:
    """A timestamp as `2026-01-31 23:59:59 UTC`, or a dash for none."""
    return "—" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def template_engine() -> JinjaTemplateEngine:
    """The engine the app renders its pages with (and the tests, the same way)."""
    environment = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        undefined=StrictUndefined,  # a misspelt name fails the render instead of showing nothing
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters.update(thousands=thousands, percent=percent, duration=duration, utc=utc)
    environment.globals.update(stylesheet=STYLESHEET, format_value=format_value)
    return JinjaTemplateEngine.from_environment(environment)


def template_config() -> TemplateConfig[JinjaTemplateEngine]:
    """Litestar's template configuration for `Template` responses."""
    return TemplateConfig(instance=template_engine())
