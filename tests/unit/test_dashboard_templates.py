"""The admin pages' templates, rendered by the engine the app uses: autoescaping, and the charts' geometry."""

from __future__ import annotations

import re
from datetime import date

from market.adapters.http.templating import template_engine
from market.domain.analytics import PaymentsOnDay
from market.ops.dashboard import payments_chart

SCRIPT = "<script>alert('owned')</script>"


def render(name: str, **context: object) -> str:
    return template_engine().get_template(name).render(**context)


def test_a_title_and_message_with_markup_render_escaped():
    page = render("message.html", title=SCRIPT, message=f'"{SCRIPT}"', signed_in=False)
    assert "<script" not in page
    assert "&lt;script&gt;alert(&#39;owned&#39;)&lt;/script&gt; · market admin</title>" in page
    assert "&#34;&lt;script&gt;" in page


def test_a_typed_email_is_escaped_inside_its_attribute():
    page = render("login.html", email='a"><script>x</script>@example.com', message=None)
    assert 'value="a&#34;&gt;&lt;script&gt;x&lt;/script&gt;@example.com"' in page
    assert "<script" not in page


def test_the_not_found_page_escapes_the_path():
    page = render("not_found.html", path="/<img src=x onerror=alert(1)>", trace_id="0" * 32)
    assert "<img" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page


def test_the_payments_chart_scales_the_busiest_day_to_the_full_height():
    chart = payments_chart(
        [
            PaymentsOnDay(day="2026-01-01", succeeded=3, failed=1),
            PaymentsOnDay(day="2026-01-03", succeeded=1, failed=1),
        ],
        date(2026, 1, 1),
        date(2026, 1, 4),
    )
    assert chart.peak == 4 and [bar.day for bar in chart.bars] == ["2026-01-01", "2026-01-03"]
    busiest, other = chart.bars
    assert busiest.failed_y == chart.top and busiest.succeeded_y + busiest.succeeded_height == chart.axis_y
    assert other.succeeded_height + other.failed_height == (chart.axis_y - chart.top) / 2
    assert busiest.x < other.x < chart.width


def test_the_payments_chart_macro_draws_one_group_per_day_with_attempts():
    chart = payments_chart(
        [PaymentsOnDay(day="2026-01-02", succeeded=2, failed=0)], date(2026, 1, 1), date(2026, 1, 2)
    )
    svg = (
        template_engine()
        .engine.from_string(
            '{% from "macros/charts.html" import payments_chart %}{{ payments_chart(chart) }}'
        )
        .render(chart=chart)
    )
    assert len(re.findall(r"<g><title>", svg)) == 1
    assert "2026-01-02: 2 succeeded, 0 failed" in svg
    assert "from 2026-01-01 to 2026-01-02" in svg
