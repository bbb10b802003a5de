"""Settings from the environment (and `.env`), read once at start: one frozen dataclass per section.

A bad value raises `ConfigError` whose message is one line naming the variable; the CLI prints it and exits.
Each setting is declared once, as its field: `setting(variable, parse, default)` beside its docstring; `_read`
fills a section from those declarations, then runs the section's `check` (cross-field rules) if it has one.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from datetime import time
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from market.domain.redaction import safe_url

DEFAULT_DATABASE_URL = "sqlite:///var/market.db"
_S = TypeVar("_S")


class ConfigError(Exception):
    """A setting has a value the service cannot use. The message names the variable."""


@dataclass(frozen=True, slots=True)
class DatabaseURL:
    """A database URL in the SQLAlchemy convention, split into what the engines need."""

    engine: str  # "postgresql" or "sqlite"
    url: str = field(repr=False)  # may hold the password: show `redacted()`
    path: str | None = None  # sqlite: the file
    dsn: str | None = field(default=None, repr=False)  # postgresql: a libpq/asyncpg DSN, password included
    name: str = ""  # the database name (sqlite: the file name)

    @classmethod
    def parse(cls, url: str, variable: str = "MARKET_DATABASE_URL") -> DatabaseURL:
        """`sqlite:///relative/path`, `sqlite:////absolute/path`, `postgresql://user@host:port/db`
        (also `postgres://` and `postgresql+asyncpg://`)."""
        scheme, sep, rest = url.partition("://")
        scheme = scheme.lower()
        if not sep:
            raise ConfigError(f"{variable}: expected a URL like sqlite:///var/market.db, got {url!r}")
        if scheme in ("sqlite", "sqlite+aiosqlite"):
            if not rest.startswith("/") or rest == "/":
                raise ConfigError(f"{variable}: a SQLite URL needs a path, as in sqlite:///var/market.db")
            path = rest[1:]  # 'sqlite:///x' -> 'x'; 'sqlite:////abs/x' -> '/abs/x'
            return cls(engine="sqlite", url=url, path=path, name=Path(path).name)
        if scheme in ("postgresql", "postgres", "postgresql+asyncpg"):
            parts = urlsplit("postgresql://" + rest)
            try:
                parts.port  # noqa: B018 - raises ValueError on a bad port
            except ValueError:
                raise ConfigError(f"{variable}: the port in the PostgreSQL URL is not a number") from None
            name = unquote(parts.path.lstrip("/"))
            if not name:
                raise ConfigError(f"{variable}: the PostgreSQL URL names no database, as in .../market")
            return cls(engine="postgresql", url=url, dsn="postgresql://" + rest, name=name)
        raise ConfigError(f"{variable}: unsupported scheme {scheme!r}; use sqlite:/// or postgresql://")

    def redacted(self) -> str:
        """The URL for logs and messages: what `safe_url` shows (no password, query or fragment, where
        libpq options such as `password=` may travel), with the user name kept and the password as `***`."""
        shown = safe_url(self.url)
        user = urlsplit(self.url).username
        if user is None:
            return shown
        password = ":***" if urlsplit(self.url).password is not None else ""
        scheme, sep, rest = shown.partition("://")
        return f"{scheme}{sep}{user}{password}@{rest}"


Parse = Callable[["_Env", str, Any], Any]
"""Reads one setting: `(env, variable, default) -> value`; raises `ConfigError` naming the variable."""


def setting(
    variable: str, parse: Parse, default: Any = MISSING, *, factory: Any = MISSING, secret: bool = False
) -> Any:
    """A settings field read from `variable` by `parse` (given the field's default); `secret` hides it from repr.

    The one place a setting's variable, default and parsing are written; `_read` turns a section into values."""
    return field(
        default=default,
        default_factory=factory,
        repr=not secret,
        metadata={"variable": variable, "parse": parse},
    )


def _text(env: _Env, name: str, default: str) -> str:
    return env.str(name, default)


def _optional(env: _Env, name: str, _default: None) -> str | None:
    return env.str(name, "") or None


def _flag(env: _Env, name: str, default: bool) -> bool:
    return env.bool(name, default)


MAX_DURATION_S = 10 * 365 * 86400
"""The longest duration a setting takes: ten years (a retry delay past year 9999 overflows every timestamp)."""


def _whole(minimum: int, maximum: int) -> Parse:
    return lambda env, name, default: env.int(name, default, minimum=minimum, maximum=maximum)


def _seconds(minimum: int = 0, maximum: int = MAX_DURATION_S) -> Parse:
    """Seconds, as a whole number (`15`) or with a unit (`15s`, `30m`, `24h`, `2d`)."""
    return lambda env, name, default: env.duration(name, default, minimum=minimum, maximum=maximum)


def _optional_seconds(env: _Env, name: str, _default: None) -> int | None:
    return env.duration(name, 0) if env.str(name, "").strip() else None


def _rate(env: _Env, name: str, default: Rate) -> Rate:
    raw = env.str(name, "")
    return Rate.parse(raw, name) if raw else default


def _read(section: type[_S], env: _Env) -> _S:
    """Every field of a settings section from its variable, then the section's cross-field checks."""
    values: dict[str, Any] = {}
    for f in fields(section):  # type: ignore[arg-type]
        if "section" in f.metadata:
            values[f.name] = _read(f.metadata["section"], env)
            continue
        default = f.default if f.default is not MISSING else None
        if f.default_factory is not MISSING:
            default = f.default_factory()
        values[f.name] = f.metadata["parse"](env, f.metadata["variable"], default)
    check = getattr(section, "check", None)
    if check is not None:
        check(values)
    return section(**values)


def _database_url(env: _Env, name: str, _default: None) -> DatabaseURL:
    return DatabaseURL.parse(env.str(name, DEFAULT_DATABASE_URL), name)


@dataclass(frozen=True, slots=True)
class DatabaseSettings:
    url: DatabaseURL = setting("MARKET_DATABASE_URL", _database_url)
    """Which database to use (MARKET_DATABASE_URL)."""
    pool_size: int = setting("MARKET_DATABASE_POOL_SIZE", _whole(1, 1000), 10)
    """Connections per worker process in the PostgreSQL pool (MARKET_DATABASE_POOL_SIZE)."""
    statement_timeout_s: int = setting("MARKET_DATABASE_STATEMENT_TIMEOUT", _seconds(minimum=1), 5)
    """PostgreSQL cancels a statement running longer than this (MARKET_DATABASE_STATEMENT_TIMEOUT, seconds);
    the request answers 503. Reports, pruning, bulk loads and migrations raise it for their own transaction."""
    lock_timeout_s: int = setting("MARKET_DATABASE_LOCK_TIMEOUT", _seconds(minimum=1), 2)
    """The longest a statement waits for a lock (MARKET_DATABASE_LOCK_TIMEOUT, seconds): PostgreSQL's
    `lock_timeout`, SQLite's busy timeout. A request that would wait longer answers 503."""
    pool_timeout_s: int = setting("MARKET_DATABASE_POOL_TIMEOUT", _seconds(minimum=1), 5)
    """The longest a request waits for a free pooled PostgreSQL connection (MARKET_DATABASE_POOL_TIMEOUT,
    seconds) before answering 503."""


def _public_url(env: _Env, name: str, _default: str) -> str:
    """An http(s) URL with a host (and, if any, a numeric port): the sandbox posts its webhooks there, and a
    value it cannot parse would leave asynchronous payments to reconciliation."""
    raw = env.str(name, "").rstrip("/")
    if not raw:
        return raw
    try:
        parts = urlsplit(raw)
        valid = parts.scheme.lower() in ("http", "https") and bool(parts.hostname)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError:
        valid = False
    if not valid:
        raise ConfigError(f"{name}: expected an http(s) URL, as in https://market.example.com")
    return raw


@dataclass(frozen=True, slots=True)
class ServerSettings:
    host: str = setting("MARKET_HOST", _text, "127.0.0.1")
    """Interface `market serve` binds (MARKET_HOST)."""
    port: int = setting("MARKET_PORT", _whole(0, 65535), 8000)
    """Port `market serve` listens on (MARKET_PORT)."""
    public_url: str = setting("MARKET_PUBLIC_URL", _public_url, "")
    """Where this service is reachable from outside (MARKET_PUBLIC_URL); defaults to http://host:port."""
    max_body_bytes: int = setting("MARKET_MAX_BODY_BYTES", _whole(1, 1 << 30), 1_048_576)
    """Largest request body accepted (MARKET_MAX_BODY_BYTES, bytes); bigger ones get 413."""
    keep_alive_s: int = setting("MARKET_KEEP_ALIVE_S", _whole(1, 3600), 75)
    """How long an idle keep-alive connection stays open (MARKET_KEEP_ALIVE_S). Longer than a balancer in front
    keeps idle connections to reuse them (HAProxy purges its pool within seconds; nginx's upstream
    keepalive_timeout and AWS's load balancers default to 60 s), so that the balancer is the side that closes
    them: with uvicorn's default of 5 s, a balancer reusing a connection just as the server closed it got no
    response, and its client an error (a POST is not retried)."""


def _secret_key(env: _Env, name: str, _default: None) -> str | None:
    raw = env.get(name)
    if raw is not None and not raw.strip():
        # Set but empty is a mistake (a secret store's missing entry, `KEY=` in .env): read as unset, it would
        # sign tokens with a generated key that no other replica shares.
        raise ConfigError(f"{name}: set but empty; give it a value (e.g. openssl rand -hex 32) or unset it")
    return secret_key(env.str(name, ""), name)


@dataclass(frozen=True, slots=True)
class AuthSettings:
    secret_key: str | None = setting("MARKET_SECRET_KEY", _secret_key, None, secret=True)
    """Signs bearer tokens (MARKET_SECRET_KEY): at least 32 bytes (`openssl rand -hex 32`), not a repetition of
    a few characters. None: one is generated into the var folder on first start."""
    token_ttl_seconds: int = setting("MARKET_TOKEN_TTL_SECONDS", _whole(60, 30 * 86400), 3600)  # not a secret
    """Lifetime of an access token (MARKET_TOKEN_TTL_SECONDS)."""


def _log_level(env: _Env, name: str, default: str) -> str:
    return env.choice(name, default, ("DEBUG", "INFO", "WARNING", "ERROR"))


@dataclass(frozen=True, slots=True)
class TelemetrySettings:
    service_name: str = setting("OTEL_SERVICE_NAME", _text, "market")
    """OTEL_SERVICE_NAME."""
    console: bool = setting("MARKET_TELEMETRY_CONSOLE", _flag, False)
    """Print spans to stderr for a quick look (MARKET_TELEMETRY_CONSOLE=1)."""
    log_level: str = setting("MARKET_LOG_LEVEL", _log_level, "INFO")
    """Threshold of the JSON log lines on stdout (MARKET_LOG_LEVEL)."""
    metrics_token: str | None = setting("MARKET_METRICS_TOKEN", _optional, None, secret=True)
    """When set, `GET /metrics` needs `Authorization: Bearer <token>` (MARKET_METRICS_TOKEN)."""
    # The standard OpenTelemetry variables market.telemetry decides by, read here once like every setting
    # (the SDK's exporters and resource still read theirs: headers, timeout, resource attributes, sampler arg).
    otlp_endpoint: str | None = setting("OTEL_EXPORTER_OTLP_ENDPOINT", _optional, None)
    """OTEL_EXPORTER_OTLP_ENDPOINT: export spans, metrics (and logs, if asked) over OTLP; None: nothing is
    exported and spans are not recorded."""
    otlp_traces_endpoint: str | None = setting("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", _optional, None)
    """OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: spans only, to this endpoint."""
    otlp_metrics_endpoint: str | None = setting("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", _optional, None)
    """OTEL_EXPORTER_OTLP_METRICS_ENDPOINT: metrics only, to this endpoint."""
    otlp_logs_endpoint: str | None = setting("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", _optional, None)
    """OTEL_EXPORTER_OTLP_LOGS_ENDPOINT: log records only, to this endpoint (with OTEL_LOGS_EXPORTER=otlp)."""
    otlp_protocol: str | None = setting("OTEL_EXPORTER_OTLP_PROTOCOL", _optional, None)
    """OTEL_EXPORTER_OTLP_PROTOCOL: `grpc`, otherwise HTTP (`http/protobuf`, the default)."""
    otlp_traces_protocol: str | None = setting("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", _optional, None)
    """OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: the protocol for spans, over OTEL_EXPORTER_OTLP_PROTOCOL."""
    otlp_metrics_protocol: str | None = setting("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", _optional, None)
    """OTEL_EXPORTER_OTLP_METRICS_PROTOCOL: the protocol for metrics, over OTEL_EXPORTER_OTLP_PROTOCOL."""
    otlp_logs_protocol: str | None = setting("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", _optional, None)
    """OTEL_EXPORTER_OTLP_LOGS_PROTOCOL: the protocol for log records, over OTEL_EXPORTER_OTLP_PROTOCOL."""
    logs_exporter: str | None = setting("OTEL_LOGS_EXPORTER", _optional, None)
    """OTEL_LOGS_EXPORTER: `otlp` (with an endpoint) exports log records too; otherwise only JSON lines."""
    traces_sampler: str | None = setting("OTEL_TRACES_SAMPLER", _optional, None)
    """OTEL_TRACES_SAMPLER: when set, spans are sampled by it (the SDK reads it) even with no endpoint."""
    traces_exporter: str | None = setting("OTEL_TRACES_EXPORTER", _optional, None)
    """OTEL_TRACES_EXPORTER: `otlp`, `console` (to stderr), `none`, comma-separated."""
    metrics_exporter: str | None = setting("OTEL_METRICS_EXPORTER", _optional, None)
    """OTEL_METRICS_EXPORTER: `otlp`, `console` (to stderr), `none`, comma-separated."""
    resource_attributes: str | None = setting("OTEL_RESOURCE_ATTRIBUTES", _optional, None)
    """OTEL_RESOURCE_ATTRIBUTES: `key=value,...`; they win over the code's own resource values."""
    sdk_disabled: str | None = setting("OTEL_SDK_DISABLED", _optional, None)
    """OTEL_SDK_DISABLED: `true` turns the SDK off (the SDK reads it; the backup commands then push nothing)."""

    def otel_environ(self) -> dict[str, str]:
        """The OTEL_* variables above that are set, in their own spelling: what market.telemetry reads (never
        os.environ), so that tests and commands hand it settings rather than a process environment."""
        return {
            f.metadata["variable"]: value
            for f in fields(self)
            if f.metadata["variable"].startswith("OTEL_") and (value := getattr(self, f.name)) is not None
        }


@dataclass(frozen=True, slots=True)
class SentrySettings:
    dsn: str | None = setting("SENTRY_DSN", _optional, None, secret=True)
    """SENTRY_DSN; Sentry is off when unset. Its key lets anyone send events to the project."""
    environment: str = setting("SENTRY_ENVIRONMENT", _text, "production")
    """SENTRY_ENVIRONMENT."""
    release: str | None = setting("SENTRY_RELEASE", _optional, None)
    """SENTRY_RELEASE; defaults to `market@<version>+<git sha>` (market.build.release)."""
    build_sha: str | None = setting("MARKET_BUILD_SHA", _optional, None)
    """MARKET_BUILD_SHA: the git commit the running code was built from (the image sets it from its GIT_SHA
    build argument); unset, the source checkout's HEAD when there is one."""


def _gateway(env: _Env, name: str, default: str) -> str:
    return env.choice(name, default.upper(), ("SANDBOX", "STRIPE")).lower()


@dataclass(frozen=True, slots=True)
class PaymentSettings:
    gateway: str = setting("MARKET_PAYMENT_GATEWAY", _gateway, "sandbox")
    """Which provider charges cards (MARKET_PAYMENT_GATEWAY): `sandbox` (embedded default) or `stripe`."""
    webhook_secret: str | None = setting("MARKET_PAYMENT_WEBHOOK_SECRET", _optional, None, secret=True)
    """Verifies provider webhook signatures (MARKET_PAYMENT_WEBHOOK_SECRET). None: derived from the secret
    key, which suits the sandbox (it signs its own events)."""
    stripe_api_key: str | None = setting("STRIPE_API_KEY", _optional, None, secret=True)
    """Stripe secret key (STRIPE_API_KEY), needed when the gateway is `stripe`."""
    reconcile_interval_s: int = setting("MARKET_RECONCILE_INTERVAL", _seconds(1, 86400), 60)
    """How often unsettled orders are reconciled with the provider (MARKET_RECONCILE_INTERVAL: seconds, or
    with a unit like the other durations, 10s or 1m)."""


def _durations(env: _Env, name: str, default: tuple[int, ...]) -> tuple[int, ...]:
    raw = env.get(name)  # set but blank is an error, as any other unparsable schedule
    return default if raw is None else parse_durations(raw.strip(), name)


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    retry_schedule_s: tuple[int, ...] = setting(
        "MARKET_WEBHOOK_RETRY_SCHEDULE", _durations, (5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)
    )
    """Delays before each retry of a failed seller webhook delivery (MARKET_WEBHOOK_RETRY_SCHEDULE)."""
    allow_private: bool = setting("MARKET_WEBHOOKS_ALLOW_PRIVATE", _flag, False)
    """Permit loopback/private/link-local targets (MARKET_WEBHOOKS_ALLOW_PRIVATE=1): development and tests only."""


def _directory(env: _Env, name: str, default: Path) -> Path:
    return Path(env.str(name, "") or default)


def _utc_time(env: _Env, name: str, _default: None) -> time | None:
    raw = env.str(name, "")
    return parse_utc_time(raw, name) if raw else None


@dataclass(frozen=True, slots=True)
class BackupSettings:
    directory: Path = setting("MARKET_BACKUP_DIR", _directory, Path("var/backups"))
    """Where `market backup` writes archives and looks for them (MARKET_BACKUP_DIR)."""
    retention_days: int = setting("MARKET_BACKUP_RETENTION_DAYS", _whole(1, 36500), 30)
    """`market backup prune` deletes backups older than this, never the newest verified one
    (MARKET_BACKUP_RETENTION_DAYS)."""
    lock_timeout_s: int = setting("MARKET_BACKUP_LOCK_TIMEOUT", _seconds(1, 86400), 30)
    """How long `market backup restore` (PostgreSQL) waits behind another session's lock on the database's
    tables before it gives up, naming that session, with nothing changed (MARKET_BACKUP_LOCK_TIMEOUT: seconds,
    or 30s, 5m)."""
    schedule: time | None = setting("MARKET_BACKUP_SCHEDULE", _utc_time, None)
    """UTC time of day at which a service worker takes the daily backup (MARKET_BACKUP_SCHEDULE, HH:MM).
    None: no in-process schedule (use `market backup schedule` or a CronJob instead)."""


@dataclass(frozen=True, slots=True)
class AnalyticsSettings:
    retention_days: int = setting("MARKET_ANALYTICS_RETENTION_DAYS", _whole(1, 36500), 400)
    """Analytics events older than this are deleted by `market analytics prune` and by the service's
    housekeeping (MARKET_ANALYTICS_RETENTION_DAYS). The default keeps a year to compare against."""
    cart_abandon_after_s: int = setting("MARKET_CART_ABANDON_AFTER", _seconds(), 86400)
    """A cart with no checkout this long after its last addition counts as abandoned in the carts report
    (MARKET_CART_ABANDON_AFTER: seconds, or 30m, 24h, 2d)."""
    gauges_interval_s: int = setting("MARKET_BUSINESS_GAUGES_INTERVAL", _seconds(1), 60)
    """Seconds between refreshes of the business gauges of /metrics from the last 24 h's reports
    (MARKET_BUSINESS_GAUGES_INTERVAL)."""


def _probe_url(env: _Env, name: str, _default: None) -> str | None:
    raw = env.str(name, "")
    if not raw:
        return None
    parts = urlsplit(raw)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{name}: expected an http(s) URL, as in https://market.example.com/health/ready")
    return raw


@dataclass(frozen=True, slots=True)
class ProbeSettings:
    url: str | None = setting("MARKET_PROBE_URL", _probe_url, None)
    """What the synthetic availability probe requests (MARKET_PROBE_URL): the service's public address, e.g.
    https://market.example.com/health/ready through the balancer; None: `/health/ready` on the bind address."""
    interval_s: int = setting("MARKET_PROBE_INTERVAL", _seconds(), 15)
    """Seconds between probes (MARKET_PROBE_INTERVAL, or 30s, 1m); 0 turns the probe off."""


def _url_template(env: _Env, name: str, _default: None) -> str | None:
    raw = env.str(name, "")
    if not raw:
        return None
    parts = urlsplit(raw)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"{name}: expected an http(s) URL with a placeholder, as in http://jaeger:16686/trace/{{trace_id}}"
        )
    return raw


@dataclass(frozen=True, slots=True)
class SessionSettings:
    recording: bool = setting("MARKET_SESSION_RECORDING", _flag, True)
    """Record each API request of a session for session replay (MARKET_SESSION_RECORDING=0 turns it off)."""
    retention_days: int = setting("MARKET_SESSION_RETENTION_DAYS", _whole(1, 36500), 30)
    """Session timeline entries older than this are pruned in the background (MARKET_SESSION_RETENTION_DAYS)."""
    trace_url_template: str | None = setting("MARKET_TRACE_URL_TEMPLATE", _url_template, None)
    """Where a trace is shown, with `{trace_id}` (MARKET_TRACE_URL_TEMPLATE), e.g.
    `http://jaeger:16686/trace/{trace_id}`; the session page links each request there."""
    sentry_url_template: str | None = setting("MARKET_SENTRY_URL_TEMPLATE", _url_template, None)
    """Where a Sentry event is shown, with `{event_id}` (MARKET_SENTRY_URL_TEMPLATE); the session page links
    each reported error there."""


@dataclass(frozen=True, slots=True)
class SmtpURL:
    """`smtp://[user:password@]host[:port]` (port 25; upgraded with STARTTLS when the server offers it) or
    `smtps://…` (TLS from the first byte, port 465). User and password are percent-decoded."""

    host: str
    port: int
    implicit_tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @classmethod
    def parse(cls, url: str, variable: str = "MARKET_ALERT_SMTP_URL") -> SmtpURL:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ConfigError(f"{variable}: expected a URL like smtp://user:password@host:587")
        try:
            port = parts.port
        except ValueError:
            raise ConfigError(f"{variable}: the port is not a number") from None
        return cls(
            host=parts.hostname,
            port=port or (465 if scheme == "smtps" else 25),
            implicit_tls=scheme == "smtps",
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password is not None else None,
        )


def _slack_url(env: _Env, name: str, _default: None) -> str | None:
    slack = env.str(name, "") or None
    parts = urlsplit(slack or "")
    if slack and (parts.scheme.lower() not in ("http", "https") or not parts.hostname):
        raise ConfigError(f"{name}: expected an http(s) URL")
    return slack


def _smtp_url(env: _Env, name: str, _default: None) -> SmtpURL | None:
    raw = env.str(name, "")
    return SmtpURL.parse(raw, name) if raw else None


def _addresses(env: _Env, name: str, _default: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(a.strip() for a in env.str(name, "").split(",") if a.strip())


@dataclass(frozen=True, slots=True)
class AlertSettings:
    eval_interval_s: int = setting("MARKET_ALERT_EVAL_INTERVAL", _seconds(1, 3600), 15)
    """How often the in-process alert rules are evaluated (MARKET_ALERT_EVAL_INTERVAL: seconds, or with a unit
    as MARKET_ALERT_FOR takes them, 1s or 1m)."""
    hold_s: int | None = setting("MARKET_ALERT_FOR", _optional_seconds, None)
    """How long every in-app rule's condition must hold before it fires or resolves (MARKET_ALERT_FOR, a
    duration such as `10s`); None: each rule's own `for:`, the same as its Prometheus rule's."""
    slack_webhook_url: str | None = setting("MARKET_ALERT_SLACK_WEBHOOK_URL", _slack_url, None, secret=True)
    """Slack-compatible incoming webhook that gets a message when an alert fires and when it resolves
    (MARKET_ALERT_SLACK_WEBHOOK_URL). It is a secret: never logged."""
    smtp: SmtpURL | None = setting("MARKET_ALERT_SMTP_URL", _smtp_url, None)
    """The SMTP server alert e-mails go through (MARKET_ALERT_SMTP_URL); None: no e-mails."""
    email_to: tuple[str, ...] = setting("MARKET_ALERT_EMAIL_TO", _addresses, ())
    """Recipients of alert e-mails (MARKET_ALERT_EMAIL_TO, comma-separated); needed with MARKET_ALERT_SMTP_URL."""
    email_from: str | None = setting("MARKET_ALERT_EMAIL_FROM", _optional, None)
    """Sender of alert e-mails (MARKET_ALERT_EMAIL_FROM); None: `market@<host name>`."""

    @staticmethod
    def check(values: dict[str, Any]) -> None:
        """E-mail needs both a server and recipients, and recipients and sender must each be one address."""
        if values["smtp"] and not values["email_to"]:
            raise ConfigError("MARKET_ALERT_EMAIL_TO: required when MARKET_ALERT_SMTP_URL is set")
        if values["email_to"] and not values["smtp"]:
            raise ConfigError("MARKET_ALERT_SMTP_URL: required when MARKET_ALERT_EMAIL_TO is set")
        # One address each (a list separated by spaces or semicolons, or a line break, would make every alert
        # e-mail fail at 3 a.m., refused by the server or unbuildable as a header): refused at start instead.
        # A domain without a dot (`root@localhost`) is a mail server's own business.
        if bad := [a for a in values["email_to"] if not _ONE_ADDRESS.fullmatch(a)]:
            raise ConfigError(f"MARKET_ALERT_EMAIL_TO: not an e-mail address: {bad[0]!r}")
        sender = values["email_from"]
        if sender is not None and not _ONE_ADDRESS.fullmatch(sender):
            raise ConfigError(f"MARKET_ALERT_EMAIL_FROM: not an e-mail address: {sender!r}")


_ONE_ADDRESS = re.compile(r"[^@\s,;<>]+@[^@\s,;<>]+")
"""One e-mail address as alert settings take it: no space, separator or line break, one `@`."""


@dataclass(frozen=True, slots=True)
class Rate:
    """At most `count` hits per `window_s` seconds (written `20/1m`, `10/15m`, `30/1h`)."""

    count: int
    window_s: int

    @classmethod
    def parse(cls, raw: str, variable: str) -> Rate:
        count, sep, window = raw.strip().lower().partition("/")
        unit = _DURATION.get(window[-1:], 0) if window and not _digits(window) else 1
        number = window if _digits(window) else window[:-1]
        if not sep or not _digits(count) or int(count) < 1 or not unit or not _digits(number):
            raise ConfigError(f"{variable}: expected a rate like 20/1m (hits per window), got {raw!r}")
        window_s = int(number) * unit
        if not 1 <= window_s <= 86400:
            raise ConfigError(f"{variable}: the window must be between 1s and 1d, got {raw!r}")
        return cls(int(count), window_s)


def _half_the_cpus() -> int:
    return max(1, _cpu_count() // 2)


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _redis_url(env: _Env, name: str, _default: None) -> str | None:
    redis_url = env.str(name, "") or None
    if redis_url is None:
        return None
    expected = "expected a URL like redis://127.0.0.1:6379/0"
    parts = urlsplit(redis_url)
    scheme = parts.scheme.lower()
    if scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(f"{name}: {expected}")
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is no number or out of range
    except ValueError:
        raise ConfigError(f"{name}: the port must be a number up to 65535 ({expected})") from None
    # redis-py reads "/abc" as database 0 and "/1/2" as 12, without a word: only "/N" names a database.
    if scheme != "unix" and not re.fullmatch(r"/?\d*", parts.path):
        raise ConfigError(f"{name}: the path must be a database number ({expected})")
    return redis_url


def _prefix(env: _Env, name: str, default: str) -> str:
    return env.str(name, default) or default


def _networks(env: _Env, name: str, _default: tuple) -> tuple[IPv4Network | IPv6Network, ...]:
    proxies = []
    for part in env.str(name, "").split(","):
        if part.strip():
            try:
                proxies.append(ip_network(part.strip(), strict=False))
            except ValueError:
                raise ConfigError(f"{name}: not an address or CIDR: {part.strip()!r}") from None
    return tuple(proxies)


def _milliseconds(minimum: int, maximum: int) -> Parse:
    """Written in ms, held in seconds."""
    return lambda env, name, default: (
        env.int(name, round(default * 1000), minimum=minimum, maximum=maximum) / 1000
    )


@dataclass(frozen=True, slots=True)
class RateLimitSettings:
    enabled: bool = setting("MARKET_RATE_LIMITS", _flag, True)
    """MARKET_RATE_LIMITS=off turns every rate limit off (test suites, load tests). The cap on password hashes at
    once stays (64 MiB and a core each), but callers queue for a slot instead of being refused with a 503."""
    redis_url: str | None = setting("MARKET_REDIS_URL", _redis_url, None, secret=True)
    """MARKET_REDIS_URL: counters live in Redis, shared by every worker and replica. None: in this process's
    memory (right for one process; with N processes each allows the full limit)."""
    redis_prefix: str = setting("MARKET_REDIS_PREFIX", _prefix, "market")
    """MARKET_REDIS_PREFIX: the namespace of this deployment's keys in a shared Redis."""
    trusted_proxies: tuple[IPv4Network | IPv6Network, ...] = setting("MARKET_TRUSTED_PROXIES", _networks, ())
    """MARKET_TRUSTED_PROXIES: comma-separated addresses or CIDRs of reverse proxies whose X-Forwarded-For is
    believed. Empty: the client is the socket peer and X-Forwarded-For is ignored."""
    sign_in: Rate = setting("MARKET_RATE_LIMIT_SIGN_IN", _rate, Rate(20, 60))
    """MARKET_RATE_LIMIT_SIGN_IN: sign-in attempts per client IP (`/auth/token` and `/admin/login` together)."""
    register: Rate = setting("MARKET_RATE_LIMIT_REGISTER", _rate, Rate(20, 3600))
    """MARKET_RATE_LIMIT_REGISTER: registrations per client IP."""
    checkout: Rate = setting("MARKET_RATE_LIMIT_CHECKOUT", _rate, Rate(30, 60))
    """MARKET_RATE_LIMIT_CHECKOUT: checkouts per client IP."""
    session_events: Rate = setting("MARKET_RATE_LIMIT_SESSION_EVENTS", _rate, Rate(120, 60))
    """MARKET_RATE_LIMIT_SESSION_EVENTS: session event batches per client IP."""
    sign_in_burst: Rate = setting("MARKET_RATE_LIMIT_SIGN_IN_BURST", _rate, Rate(5, 10))
    """MARKET_RATE_LIMIT_SIGN_IN_BURST: the burst within MARKET_RATE_LIMIT_SIGN_IN one client address may send."""
    sign_in_concurrency: int = setting("MARKET_RATE_LIMIT_SIGN_IN_CONCURRENCY", _whole(1, 1000), 2)
    """MARKET_RATE_LIMIT_SIGN_IN_CONCURRENCY: sign-ins one client address may have in progress at once (per
    process); more are refused at once (429), so one address cannot fill the password-hashing queue."""
    account_failures: Rate = setting("MARKET_RATE_LIMIT_ACCOUNT", _rate, Rate(10, 900))
    """MARKET_RATE_LIMIT_ACCOUNT: failed sign-ins per account (e-mail), from any IP; a success clears them."""
    hash_concurrency: int = setting("MARKET_PASSWORD_HASH_CONCURRENCY", _whole(1, 256), factory=_cpu_count)
    """MARKET_PASSWORD_HASH_CONCURRENCY: argon2 hashes computed at once per process (default: the CPUs)."""
    hash_reserved: int = setting("MARKET_PASSWORD_HASH_RESERVED", _whole(0, 256), factory=_half_the_cpus)
    """MARKET_PASSWORD_HASH_RESERVED: of those, the slots kept for sign-ins from known devices (default: half
    the CPUs, at least 1; the others always keep one). 0: one lane for all, as with MARKET_RATE_LIMITS=off."""
    hash_wait_s: float = setting("MARKET_PASSWORD_HASH_WAIT_MS", _milliseconds(0, 30000), 2.0)
    """MARKET_PASSWORD_HASH_WAIT_MS: how long a request waits for a hashing slot before a 503 (set in ms); with
    MARKET_RATE_LIMITS=off, as long as it takes."""


def _section(section: type, *, required: bool = False) -> Any:
    """A field holding a whole settings section, read by `_read` from the section's own fields."""
    if required:
        return field(metadata={"section": section})
    return field(default_factory=section, metadata={"section": section})


def _path(env: _Env, name: str, default: Path) -> Path:
    return Path(env.str(name, str(default)))


@dataclass(frozen=True, slots=True)
class Settings:
    database: DatabaseSettings = _section(DatabaseSettings, required=True)
    var_dir: Path = setting("MARKET_VAR_DIR", _path, Path("var"))
    """Where the embedded default keeps its files (MARKET_VAR_DIR)."""
    server: ServerSettings = _section(ServerSettings)
    auth: AuthSettings = _section(AuthSettings)
    telemetry: TelemetrySettings = _section(TelemetrySettings)
    sentry: SentrySettings = _section(SentrySettings)
    backup: BackupSettings = _section(BackupSettings)
    payments: PaymentSettings = _section(PaymentSettings)
    webhooks: WebhookSettings = _section(WebhookSettings)
    alerts: AlertSettings = _section(AlertSettings)
    analytics: AnalyticsSettings = _section(AnalyticsSettings)
    limits: RateLimitSettings = _section(RateLimitSettings)
    sessions: SessionSettings = _section(SessionSettings)
    probe: ProbeSettings = _section(ProbeSettings)

    @property
    def public_url(self) -> str:
        """MARKET_PUBLIC_URL, or http://<host>:<port> of the bind address (an IPv6 one in brackets: `::` as
        `http://[::]:8000`, never the unparseable `http://:::8000` the sandbox could not deliver its webhooks to)."""
        if self.server.public_url:
            return self.server.public_url
        host = self.server.host
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"http://{host}:{self.server.port}"

    @property
    def probe_url(self) -> str:
        """What the availability probe requests: MARKET_PROBE_URL, or readiness on the bind address (an
        unspecified address, 0.0.0.0 or ::, is reached on loopback)."""
        if self.probe.url:
            return self.probe.url
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self.server.host, self.server.host)
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"http://{host}:{self.server.port}/health/ready"

    def secret_values(self) -> tuple[str, ...]:
        """Every secret these settings hold, as configured: what must never leave the process (error
        reports scrub them by value). The generated signing key and the derived payment webhook secret are
        not settings; bootstrap adds them."""
        database = urlsplit(self.database.url.url).password
        values = (
            self.auth.secret_key,
            self.telemetry.metrics_token,
            self.sentry.dsn,
            self.payments.webhook_secret,
            self.payments.stripe_api_key,
            self.alerts.slack_webhook_url,
            self.alerts.smtp.password if self.alerts.smtp else None,
            database,
            unquote(database) if database else None,
        )
        return tuple(value for value in values if value)

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, dotenv: Path | None = Path(".env")
    ) -> Settings:
        """Read every section. Real environment variables win over `.env` lines."""
        env = _Env(
            {**(read_dotenv(dotenv) if dotenv else {}), **(os.environ if environ is None else environ)}
        )
        return _read(cls, env)


class _Env:
    """Typed reads with one-line errors naming the variable."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = values

    def get(self, name: str) -> str | None:
        """The raw value, None when the variable is not set."""
        return self._values.get(name)

    def str(self, name: str, default: str) -> str:
        return self._values.get(name, default).strip()

    def int(self, name: str, default: int, *, minimum: int, maximum: int) -> int:
        raw = self._values.get(name)
        if raw is None or raw.strip() == "":
            return default
        try:
            value = int(raw.strip())
        except ValueError:
            raise ConfigError(f"{name}: expected a whole number, got {raw!r}") from None
        if not minimum <= value <= maximum:
            raise ConfigError(f"{name}: must be between {minimum} and {maximum}, got {value}")
        return value

    def bool(self, name: str, default: bool) -> bool:
        raw = self._values.get(name, "").strip().lower()
        if raw == "":
            return default
        if raw in ("1", "true", "yes", "on"):
            return True
        if raw in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name}: expected on/off (or 1/0, true/false, yes/no), got {raw!r}")

    def duration(self, name: str, default: int, *, minimum: int = 0, maximum: int = MAX_DURATION_S) -> int:
        """Seconds, written as a whole number of seconds or with a unit: 90s, 30m, 24h, 2d."""
        raw = self._values.get(name, "").strip().lower()
        if raw == "":
            return default
        unit = _DURATION.get(raw[-1], 0) if not _digits(raw) else 1
        number = raw if _digits(raw) else raw[:-1]
        if not unit or not _digits(number) or int(number) * unit > MAX_DURATION_S:
            raise ConfigError(f"{name}: expected a duration like 86400, 30m, 24h or 2d, got {raw!r}")
        if int(number) * unit < minimum:
            raise ConfigError(f"{name}: must be at least {minimum} s, got {raw!r}")
        if int(number) * unit > maximum:
            raise ConfigError(f"{name}: must be at most {maximum} s, got {raw!r}")
        return int(number) * unit

    def choice(self, name: str, default: str, allowed: tuple[str, ...]) -> str:
        value = self._values.get(name, default).strip().upper() or default
        if value not in allowed:
            raise ConfigError(f"{name}: expected one of {', '.join(allowed)}, got {value!r}")
        return value


MIN_SECRET_KEY_BYTES = 32
MIN_SECRET_KEY_DISTINCT = 8  # a random hex key of 32 bytes has 16 of 16 almost surely; "abab…" has 2


def secret_key(value: str, variable: str = "MARKET_SECRET_KEY") -> str | None:
    """The signing key as given (hex, base64 or raw text: its bytes are the key), None when unset.

    Refused: fewer than 32 bytes, or a value with so few distinct characters that it cannot carry 32 bytes of
    randomness ("aaaa…", "abab…"). The message never quotes the value: it is a secret."""
    if not value:
        return None
    if len(value.encode()) < MIN_SECRET_KEY_BYTES:
        raise ConfigError(
            f"{variable}: must be at least {MIN_SECRET_KEY_BYTES} bytes of random data "
            f"(e.g. openssl rand -hex 32); this one has {len(value.encode())}"
        )
    if len(set(value)) < MIN_SECRET_KEY_DISTINCT:
        raise ConfigError(
            f"{variable}: too predictable (a few characters repeated); use random data "
            "(e.g. openssl rand -hex 32)"
        )
    return value


def parse_utc_time(value: str, variable: str) -> time:
    """`HH:MM` (24-hour clock, UTC) as a `datetime.time`."""
    match = re.fullmatch(r"([01]?\d|2[0-3]):([0-5]\d)", value.strip())
    if not match:
        raise ConfigError(f"{variable}: expected a UTC time of day as HH:MM, got {value!r}")
    return time(int(match[1]), int(match[2]))


def read_dotenv(path: Path) -> dict[str, str]:
    """`KEY=VALUE` lines; `#` comments, blank lines, optional `export ` and surrounding quotes allowed."""
    if not path.is_file():
        return {}
    values: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{path}:{number}: expected KEY=VALUE")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


_DURATION = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _digits(text: str) -> bool:
    """Whether `text` is a whole number in ASCII digits: `str.isdigit` also takes "²" (which `int` refuses)
    and "٥" (which it reads as 5)."""
    return text.isascii() and text.isdigit()


def parse_durations(raw: str, variable: str) -> tuple[int, ...]:
    """`5s,5m,30m,2h` -> (5, 300, 1800, 7200) seconds."""
    delays: list[int] = []
    for part in raw.split(","):
        part = part.strip().lower()
        unit = _DURATION.get(part[-1:]) if part else None
        if unit is None or not _digits(part[:-1]) or not 0 < int(part[:-1]) * unit <= MAX_DURATION_S:
            raise ConfigError(f"{variable}: expected durations like 5s,5m,2h (up to 10 years), got {raw!r}")
        delays.append(int(part[:-1]) * unit)
    return tuple(delays)
