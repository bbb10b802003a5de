"""The admin dashboard's HTML: server-rendered, no script, no external resource, inline CSS and SVG.

Every value that reaches the page goes through `_e` (HTML escaping, quotes included): search queries,
e-mail addresses and the period typed into the URL are user input. Numbers a test reads carry a
`data-testid`.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from market.adapters.alerting.monitor import format_value
from market.domain.analytics import PaymentsOnDay
from market.telemetry.alerting import AlertStatus

from .admin import MONITORING_KINDS
from .analytics import CartsOut, FunnelOut, PaymentsOut, SearchOut, SessionsOut

_CSS = """
*{box-sizing:border-box}
body{margin:0;font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2430;background:#eef1f5}
header{display:flex;flex-wrap:wrap;align-items:center;gap:.5rem 1.5rem;padding:.5rem 1rem;background:#1d2430;color:#fff}
header h1{font-size:1.05rem;margin:0}
header .who{margin-left:auto;font-size:.85rem;color:#d5dbe5}
header button{background:transparent;color:#fff;border:1px solid #8b97aa}
main{max-width:1340px;margin:0 auto;padding:.6rem 1rem 1rem}
form.period{display:flex;flex-wrap:wrap;align-items:center;gap:.4rem .8rem;margin:0 0 .6rem}
form.period .shown{color:#4a5567;font-size:.85rem}
input{font:inherit;padding:.2rem .35rem;border:1px solid #8b97aa;border-radius:4px}
button{font:inherit;padding:.25rem .7rem;border-radius:4px;border:1px solid #1f5fbf;background:#1f5fbf;color:#fff;cursor:pointer}
button:focus-visible,input:focus-visible,a:focus-visible{outline:3px solid #f0a800;outline-offset:1px}
.grid{display:grid;grid-template-columns:repeat(3,minmax(0,1fr));gap:.7rem}
@media (max-width:1000px){.grid{grid-template-columns:minmax(0,1fr)}}
section{background:#fff;border-radius:6px;padding:.55rem .8rem .7rem;box-shadow:0 1px 2px rgba(0,0,0,.08);min-width:0}
h2{font-size:.95rem;margin:0 0 .4rem}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:.12rem .35rem;border-bottom:1px solid #e3e7ee;vertical-align:middle}
th{font-weight:600;color:#4a5567;font-size:.8rem}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.q{word-break:break-all}
td.bar{width:42%}
th[scope=row]{white-space:nowrap}
.scroll{overflow-x:auto}
.sr-only{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}
.sev{display:block;font-weight:400;font-size:.75rem;color:#4a5567}
svg{display:block}
.figures{display:grid;grid-template-columns:repeat(auto-fill,minmax(7.2rem,1fr));gap:.3rem .6rem;margin:0 0 .4rem}
.figures div{border-left:3px solid #c9d2df;padding-left:.4rem}
.figures dt{font-size:.75rem;color:#4a5567}
.figures dd{margin:0;font-size:1.05rem;font-weight:600;font-variant-numeric:tabular-nums}
.legend{display:flex;gap:1rem;font-size:.8rem;color:#4a5567;margin:.2rem 0}
.swatch{display:inline-block;width:.8rem;height:.8rem;border-radius:2px;vertical-align:-1px;margin-right:.25rem}
.ok{color:#1b6e34}.firing{color:#b3261e;font-weight:600}
.muted{color:#4a5567;font-size:.85rem}
.notice{border-radius:6px;padding:.5rem .8rem;margin:0 0 .6rem;background:#e7f0fd;border:1px solid #9bbcf0}
.notice.error{background:#fdecea;border-color:#e8a39c}
.notice code,.notice p{overflow-wrap:anywhere}
.notice p{margin:.15rem 0}
.buttons{display:grid;grid-template-columns:1fr 1fr;gap:.4rem;margin:.3rem 0}
.buttons button{width:100%}
details summary{cursor:pointer;font-size:.8rem;color:#1f5fbf;margin-top:.2rem}
.login{max-width:22rem;margin:12vh auto;background:#fff;border-radius:8px;padding:1.2rem 1.4rem;box-shadow:0 1px 3px rgba(0,0,0,.12)}
.login h1{font-size:1.2rem;margin:0 0 .8rem}
.login label{display:block;margin:.6rem 0 .2rem;font-weight:600}
.login input{width:100%}
.login button{margin-top:1rem;width:100%}
"""

SUCCEEDED_COLOUR = "#2e8540"
FAILED_COLOUR = "#c8372d"
FUNNEL_COLOUR = "#1f5fbf"

STEP_LABELS = {
    "browsed": "Browsed",
    "carted": "Added to cart",
    "checkout_started": "Started checkout",
    "paid": "Paid",
}

KIND_LABELS = {
    "error": "Unhandled error",
    "slow": "Slow span",
    "payment_failure": "Payment failure",
    "message": "Sentry message",
}


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _pct(fraction: float) -> str:
    return f"{fraction * 100:.1f} %"


def _int(value: int) -> str:
    return f"{value:,}".replace(",", "\u202f")  # narrow no-break space: 12 345, in no locale's way


def _seconds(value: float) -> str:
    if value >= 3600:
        return f"{value / 3600:.1f} h"
    if value >= 60:
        return f"{value / 60:.1f} min"
    return f"{value:.1f} s"


def _utc(moment: datetime | None) -> str:
    return "—" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def page(title: str, body: str) -> str:
    """A whole document around `body`; `title` is escaped here."""
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(title)} · market admin</title>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="referrer" content="no-referrer"><link rel="icon" href="data:,">'
        f"<style>{_CSS}</style></head>\n<body>{body}</body></html>"
    )


def login_page(*, email: str = "", message: str | None = None) -> str:
    alert = (
        f'<p class="notice error" role="alert" data-testid="login-error">{_e(message)}</p>' if message else ""
    )
    return page(
        "Sign in",
        f"""<main class="login"><h1>market · admin sign-in</h1>{alert}
<form method="post" action="/admin/login">
<label for="email">E-mail</label>
<input id="email" name="email" type="email" autocomplete="username" required maxlength="254" value="{_e(email)}">
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required maxlength="256">
<button type="submit">Sign in</button>
</form></main>""",
    )


def message_page(title: str, message: str, *, signed_in: bool = False) -> str:
    """A plain page saying why the dashboard is not shown (403, or a refused form)."""
    action = (
        '<form method="post" action="/admin/logout"><button type="submit">Sign in as someone else</button></form>'
        if signed_in
        else '<p><a href="/admin/login">Sign in</a></p>'
    )
    return page(
        title,
        f'<main class="login"><h1>{_e(title)}</h1><p role="alert" data-testid="page-message">{_e(message)}</p>'
        f"{action}</main>",
    )


@dataclass(frozen=True, slots=True)
class Figures:
    """Everything the dashboard shows for one period, in the API's own shapes."""

    funnel: FunnelOut
    search: SearchOut
    payments: PaymentsOut
    carts: CartsOut
    sessions: SessionsOut
    payments_by_day: Sequence[PaymentsOnDay]


@dataclass(frozen=True, slots=True)
class MonitoringResult:
    kind: str
    trace_id: str
    sentry_event_id: str | None
    error: str | None = None
    """Set when the request was refused (an unknown kind): what went wrong, in plain words."""


@dataclass(frozen=True, slots=True)
class PeriodForm:
    """What the period form shows and what the monitoring forms send back."""

    raw_from: str
    raw_to: str
    shown_from: str
    """yyyy-mm-dd for the date input (empty when the typed value is not a date)."""
    shown_to: str
    errors: Sequence[tuple[str, str]] = ()


def dashboard_page(
    *,
    email: str,
    csrf_token: str,
    form: PeriodForm,
    figures: Figures | None,
    alerts: Sequence[AlertStatus] | None,
    alerts_evaluated_at: datetime | None,
    result: MonitoringResult | None = None,
) -> str:
    """The dashboard; without `figures` (a bad period) only the header, the form and the error."""
    header = f"""<header><h1>market · admin dashboard</h1>
<span class="who">Signed in as <strong>{_e(email)}</strong></span>
<form method="post" action="/admin/logout"><input type="hidden" name="csrf_token" value="{_e(csrf_token)}">
<button type="submit">Sign out</button></form></header>"""
    parts = [header, "<main>", _period_form(form, figures)]
    if result is not None:
        parts.append(_result_box(result))
    if figures is not None:
        parts.append('<div class="grid">')
        parts.append(_funnel_section(figures.funnel))
        parts.append(_payments_section(figures.payments, figures.payments_by_day, figures.funnel))
        parts.append(_search_section(figures.search))
        parts.append(_carts_sessions_section(figures.carts, figures.sessions))
        parts.append(_alerts_section(alerts, alerts_evaluated_at))
        parts.append(_monitoring_section(csrf_token, form))
        parts.append("</div>")
    parts.append("</main>")
    return page("Dashboard", "\n".join(parts))


def _period_form(form: PeriodForm, figures: Figures | None) -> str:
    errors = ""
    if form.errors:
        items = "".join(
            f"<li><strong>{_e(field)}</strong>: {_e(message)}</li>" for field, message in form.errors
        )
        errors = (
            '<div class="notice error" role="alert" data-testid="period-error"><p>The period is not valid, '
            f"so no figures are shown. Pick dates (at most 366 days apart, from before to).</p><ul>{items}</ul></div>"
        )
    shown = ""
    if figures is not None:
        shown = (
            f'<span class="shown" data-testid="period">{_e(_utc(figures.funnel.from_))} – '
            f"{_e(_utc(figures.funnel.to))}</span>"
        )
    return f"""<form class="period" method="get" action="/admin/dashboard" aria-label="Period">
<label for="from">From</label><input id="from" name="from" type="date" value="{_e(form.shown_from)}">
<label for="to">To (included)</label><input id="to" name="to" type="date" value="{_e(form.shown_to)}">
<button type="submit">Show</button>{shown}</form>{errors}"""


def _result_box(result: MonitoringResult) -> str:
    if result.error is not None:
        return (
            f'<div class="notice error" role="alert" data-testid="monitoring-result"><p>{_e(result.error)}</p>'
            f'<p>Trace id: <code data-testid="monitoring-trace-id">{_e(result.trace_id)}</code></p></div>'
        )
    produced = {
        "error": "Raised a MonitoringTestError and reported it as an unexpected error: an ERROR server span with "
        "an exception event, an error log line and a Sentry event. This page is answered with status 500 "
        "so the error-rate metric counts it, as for the API.",
        "slow": "Made a span “monitoring.slow” of at least 2.5 s inside this request's trace.",
        "payment_failure": "Declined a 1.00 EUR test charge (tok_chargeDeclined) through the sandbox "
        "gateway: a declined payment attempt in the metrics, which the payment_failures alert reads.",
        "message": "Sent an info-level Sentry message.",
    }[result.kind]
    event = (
        f'<code data-testid="monitoring-sentry-event-id">{_e(result.sentry_event_id)}</code>'
        if result.sentry_event_id
        else '<span data-testid="monitoring-sentry-event-id">none (Sentry is off, or this kind sends none)</span>'
    )
    return f"""<div class="notice" role="status" data-testid="monitoring-result" data-kind="{_e(result.kind)}">
<p><strong>{_e(KIND_LABELS[result.kind])}</strong>: {_e(produced)}</p>
<p>Trace id: <code data-testid="monitoring-trace-id">{_e(result.trace_id)}</code> · Sentry event id: {event}</p>
</div>"""


def _figures_list(items: Sequence[tuple[str, str, str]]) -> str:
    """A row of headline numbers: (label, value, data-testid)."""
    cells = "".join(
        f'<div><dt>{_e(label)}</dt><dd data-testid="{_e(testid)}">{_e(value)}</dd></div>'
        for label, value, testid in items
    )
    return f'<dl class="figures">{cells}</dl>'


def _funnel_section(funnel: FunnelOut) -> str:
    top = max((step.sessions for step in funnel.steps), default=0)
    rows = []
    for step in funnel.steps:
        width = 100 * step.sessions / top if top else 0
        rows.append(
            f"""<tr><th scope="row">{_e(STEP_LABELS.get(step.name, step.name))}</th>
<td class="bar"><svg viewBox="0 0 100 14" width="100%" height="14" preserveAspectRatio="none" aria-hidden="true">
<rect x="0" y="0" width="100" height="14" fill="#e3e7ee"/><rect x="0" y="0" width="{width:.2f}" height="14" fill="{FUNNEL_COLOUR}"/></svg></td>
<td class="n" data-testid="funnel-{_e(step.name)}">{_int(step.sessions)}</td>
<td class="n" data-testid="funnel-{_e(step.name)}-conversion">{_pct(step.conversion)}</td></tr>"""
        )
    return f"""<section aria-labelledby="funnel-h"><h2 id="funnel-h">Funnel (sessions)</h2>
<table><thead><tr><th scope="col">Step</th><th scope="col"><span class="sr-only">Bar: share of the first step</span></th>
<th scope="col" class="n">Sessions</th><th scope="col" class="n">Of previous</th></tr></thead>
<tbody>{"".join(rows)}</tbody></table>
<p class="muted">Overall conversion (browsed → paid):
<strong data-testid="funnel-overall-conversion">{_pct(funnel.overall_conversion)}</strong></p></section>"""


def _days(start: date, end: date) -> list[str]:
    return [(start + timedelta(days=n)).isoformat() for n in range((end - start).days + 1)]


def payments_chart(by_day: Sequence[PaymentsOnDay], start: date, end: date) -> str:
    """Stacked bars per UTC day of the period: succeeded below, failed (declined or errored) above."""
    counts = {d.day: d for d in by_day}
    days = _days(start, end)
    width, height, top_pad, bottom = 420.0, 130.0, 12.0, 16.0
    plot = height - top_pad - bottom
    peak = max((d.succeeded + d.failed for d in by_day), default=0) or 1
    step = width / len(days)
    bar = min(max(step * 0.75, 0.5), 24.0)  # thin for a year of days, not a slab for one
    bars = []
    for n, day in enumerate(days):
        entry = counts.get(day)
        if entry is None or entry.succeeded + entry.failed == 0:
            continue
        x = n * step + (step - bar) / 2
        ok_h = plot * entry.succeeded / peak
        fail_h = plot * entry.failed / peak
        base = top_pad + plot
        bars.append(
            f"<g><title>{_e(day)}: {entry.succeeded} succeeded, {entry.failed} failed</title>"
            f'<rect x="{x:.2f}" y="{base - ok_h:.2f}" width="{bar:.2f}" height="{ok_h:.2f}" fill="{SUCCEEDED_COLOUR}"/>'
            f'<rect x="{x:.2f}" y="{base - ok_h - fail_h:.2f}" width="{bar:.2f}" height="{fail_h:.2f}" '
            f'fill="{FAILED_COLOUR}"/></g>'
        )
    axis_y = top_pad + plot
    return f"""<svg viewBox="0 0 {width:.0f} {height:.0f}" width="100%" role="img" aria-labelledby="pay-chart-t">
<title id="pay-chart-t">Payment attempts per day from {_e(days[0])} to {_e(days[-1])}: succeeded in green, failed in red; the table below lists them.</title>
<line x1="0" y1="{axis_y}" x2="{width:.0f}" y2="{axis_y}" stroke="#8b97aa" stroke-width="1"/>
<line x1="0" y1="{top_pad}" x2="{width:.0f}" y2="{top_pad}" stroke="#e3e7ee" stroke-dasharray="3 3"/>
<text x="2" y="{top_pad - 2}" font-size="10" fill="#4a5567">{peak} per day</text>
{"".join(bars)}
<text x="0" y="{height - 3}" font-size="10" fill="#4a5567">{_e(days[0])}</text>
<text x="{width:.0f}" y="{height - 3}" font-size="10" fill="#4a5567" text-anchor="end">{_e(days[-1])}</text>
</svg>"""


def _payments_section(payments: PaymentsOut, by_day: Sequence[PaymentsOnDay], funnel: FunnelOut) -> str:
    figures = _figures_list(
        [
            ("Attempts", _int(payments.attempts), "payments-attempts"),
            ("Succeeded", _int(payments.succeeded), "payments-succeeded"),
            ("Declined", _int(payments.declined), "payments-declined"),
            ("Errored", _int(payments.errored), "payments-errored"),
            ("Success rate", _pct(payments.success_rate), "payments-success-rate"),
        ]
    )
    chart = payments_chart(by_day, funnel.from_.date(), funnel.to.date())
    days = [d for d in by_day if d.succeeded or d.failed]
    day_rows = "".join(
        f'<tr><td>{_e(d.day)}</td><td class="n">{_int(d.succeeded)}</td><td class="n">{_int(d.failed)}</td></tr>'
        for d in days
    )
    per_day = (
        f"""<details><summary>Per day ({len(days)} {"day" if len(days) == 1 else "days"} with attempts)</summary><table data-testid="payments-by-day">
<thead><tr><th scope="col">Day (UTC)</th><th scope="col" class="n">Succeeded</th><th scope="col" class="n">Failed</th></tr></thead>
<tbody>{day_rows}</tbody></table></details>"""
        if days
        else '<p class="muted">No payment attempts in this period.</p>'
    )
    amounts = ""
    if payments.amounts:
        rows = "".join(
            f'<tr><td>{_e(a.currency)}</td><td class="n">{_int(a.count)}</td><td class="n">{_int(a.sum_cents)}</td>'
            f'<td class="n">{_int(a.mean_cents)}</td><td class="n">{_int(a.p50_cents)}</td><td class="n">{_int(a.p95_cents)}</td></tr>'
            for a in payments.amounts
        )
        amounts = f"""<details><summary>Amounts of succeeded payments (minor units)</summary><table>
<thead><tr><th scope="col">Currency</th><th scope="col" class="n">Payments</th><th scope="col" class="n">Sum</th>
<th scope="col" class="n">Mean</th><th scope="col" class="n">p50</th><th scope="col" class="n">p95</th></tr></thead>
<tbody>{rows}</tbody></table></details>"""
    legend = (
        f'<div class="legend"><span><span class="swatch" style="background:{SUCCEEDED_COLOUR}"></span>succeeded</span>'
        f'<span><span class="swatch" style="background:{FAILED_COLOUR}"></span>failed (declined or errored)</span></div>'
    )
    return f"""<section aria-labelledby="payments-h"><h2 id="payments-h">Payments</h2>{figures}
{chart}{legend}{per_day}{amounts}</section>"""


def _search_section(search: SearchOut) -> str:
    figures = _figures_list(
        [
            ("Searches", _int(search.searches), "search-searches"),
            ("Without results", _int(search.no_results), "search-no-results"),
            ("No-result rate", _pct(search.no_results_rate), "search-no-results-rate"),
            ("Success rate", _pct(search.success_rate), "search-success-rate"),
        ]
    )
    if search.top_no_result_queries:
        rows = "".join(
            f'<tr><td class="q">{_e(q.query)}</td><td class="n">{_int(q.count)}</td></tr>'
            for q in search.top_no_result_queries
        )
        table = f"""<table data-testid="no-result-queries"><caption class="muted" style="text-align:left">Top searches without results</caption>
<thead><tr><th scope="col">Query</th><th scope="col" class="n">Searches</th></tr></thead><tbody>{rows}</tbody></table>"""
    else:
        table = '<p class="muted" data-testid="no-result-queries">No search went without results in this period.</p>'
    return f"""<section aria-labelledby="search-h"><h2 id="search-h">Search</h2>{figures}{table}</section>"""


def _carts_sessions_section(carts: CartsOut, sessions: SessionsOut) -> str:
    cart_figures = _figures_list(
        [
            ("Carts with items", _int(carts.carts_with_items), "carts-with-items"),
            ("Checked out", _int(carts.checked_out), "carts-checked-out"),
            ("Abandoned", _int(carts.abandoned), "carts-abandoned"),
            ("Abandonment rate", _pct(carts.abandonment_rate), "carts-abandonment-rate"),
        ]
    )
    session_figures = _figures_list(
        [
            ("Sessions", _int(sessions.sessions), "sessions-sessions"),
            ("Median duration", _seconds(sessions.median_duration_s), "sessions-median-duration"),
            ("p95 duration", _seconds(sessions.p95_duration_s), "sessions-p95-duration"),
            ("Events per session", f"{sessions.events_per_session:.1f}", "sessions-events-per-session"),
        ]
    )
    return f"""<section aria-labelledby="carts-h"><h2 id="carts-h">Carts</h2>{cart_figures}
<p class="muted">A cart is abandoned when no checkout starts within {_seconds(carts.abandon_after_s)} of its last addition.</p>
<h2>Sessions</h2>{session_figures}</section>"""


def _alerts_section(alerts: Sequence[AlertStatus] | None, evaluated_at: datetime | None) -> str:
    if alerts is None:
        body = (
            '<p class="muted" data-testid="alerts">No alert rules: this process does not evaluate alerts.</p>'
        )
    elif not alerts:
        body = '<p class="muted" data-testid="alerts">The alert rules have not been evaluated yet.</p>'
    else:
        rows = "".join(
            f'<tr data-testid="alert-{_e(s.name)}"><th scope="row" title="{_e(s.description)}">{_e(s.name)}'
            f'<span class="sev">{_e(s.severity)}</span></th>'
            f'<td class="{"firing" if s.state == "firing" else "ok"}">{_e(s.state)}</td>'
            f'<td class="n">{_e(format_value(s.value, s))}</td><td class="n">{_e(format_value(s.threshold, s))}</td>'
            f'<td class="n">{_e(s.since.strftime("%m-%d %H:%M") if s.since else "—")}</td></tr>'
            for s in alerts
        )
        body = f"""<div class="scroll"><table data-testid="alerts"><thead><tr><th scope="col">Rule</th>
<th scope="col">State</th><th scope="col" class="n">Value</th><th scope="col" class="n">Fires above</th>
<th scope="col" class="n">Since</th></tr></thead><tbody>{rows}</tbody></table></div>"""
    evaluated = (
        f'<p class="muted">Evaluated at {_e(_utc(evaluated_at))}; "since" is in UTC too.</p>'
        if evaluated_at
        else ""
    )
    return f"""<section aria-labelledby="alerts-h"><h2 id="alerts-h">Alerts</h2>{body}{evaluated}</section>"""


def _monitoring_section(csrf_token: str, form: PeriodForm) -> str:
    buttons = "".join(
        f"""<form method="post" action="/admin/dashboard/test-monitoring">
<input type="hidden" name="csrf_token" value="{_e(csrf_token)}"><input type="hidden" name="kind" value="{_e(kind)}">
<input type="hidden" name="from" value="{_e(form.raw_from)}"><input type="hidden" name="to" value="{_e(form.raw_to)}">
<button type="submit" data-testid="monitoring-{_e(kind)}">{_e(KIND_LABELS[kind])}</button></form>"""
        for kind in MONITORING_KINDS
    )
    return f"""<section aria-labelledby="monitoring-h"><h2 id="monitoring-h">Test the monitoring</h2>
<p class="muted">Each button produces exactly one signal, as <code>POST /api/v1/admin/test-monitoring</code> does,
and shows its trace id (find it in Jaeger/Tempo) and Sentry event id.</p>
<div class="buttons">{buttons}</div></section>"""
