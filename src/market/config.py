"""Settings from the environment (and `.env`), read once at start: one frozen dataclass per section.

A bad value raises `ConfigError` whose message is one line naming the variable; the CLI prints it and exits.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import time
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from urllib.parse import unquote, urlsplit

from market.domain.redaction import safe_url

DEFAULT_DATABASE_URL = "sqlite:///var/market.db"


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


@dataclass(frozen=True, slots=True)
class DatabaseSettings:
    url: DatabaseURL
    """Which database to use (MARKET_DATABASE_URL)."""
    pool_size: int = 10
    """Connections per worker process in the PostgreSQL pool (MARKET_DATABASE_POOL_SIZE)."""
    statement_timeout_s: int = 5
    """PostgreSQL cancels a statement running longer than this (MARKET_DATABASE_STATEMENT_TIMEOUT, seconds);
    the request answers 503. Reports, pruning, bulk loads and migrations raise it for their own transaction."""
    lock_timeout_s: int = 2
    """The longest a statement waits for a lock (MARKET_DATABASE_LOCK_TIMEOUT, seconds): PostgreSQL's
    `lock_timeout`, SQLite's busy timeout. A request that would wait longer answers 503."""
    pool_timeout_s: int = 5
    """The longest a request waits for a free pooled PostgreSQL connection (MARKET_DATABASE_POOL_TIMEOUT,
    seconds) before answering 503."""


@dataclass(frozen=True, slots=True)
class ServerSettings:
    host: str = "127.0.0.1"
    """Interface `market serve` binds (MARKET_HOST)."""
    port: int = 8000
    """Port `market serve` listens on (MARKET_PORT)."""
    public_url: str = ""
    """Where this service is reachable from outside (MARKET_PUBLIC_URL); defaults to http://host:port."""
    max_body_bytes: int = 1_048_576
    """Largest request body accepted; bigger ones get 413."""


@dataclass(frozen=True, slots=True)
class AuthSettings:
    secret_key: str | None = field(default=None, repr=False)
    """Signs bearer tokens (MARKET_SECRET_KEY): at least 32 bytes (`openssl rand -hex 32`), not a repetition of
    a few characters. None: one is generated into the var folder on first start."""
    token_ttl_seconds: int = 3600  # a lifetime (not a secret)
    """Lifetime of an access token (MARKET_TOKEN_TTL_SECONDS)."""


@dataclass(frozen=True, slots=True)
class TelemetrySettings:
    service_name: str = "market"
    """OTEL_SERVICE_NAME."""
    console: bool = False
    """Print spans to stderr for a quick look (MARKET_TELEMETRY_CONSOLE=1)."""
    log_level: str = "INFO"
    """Threshold of the JSON log lines on stdout (MARKET_LOG_LEVEL)."""
    metrics_token: str | None = field(default=None, repr=False)
    """When set, `GET /metrics` needs `Authorization: Bearer <token>` (MARKET_METRICS_TOKEN)."""


@dataclass(frozen=True, slots=True)
class SentrySettings:
    dsn: str | None = field(default=None, repr=False)
    """SENTRY_DSN; Sentry is off when unset. Its key lets anyone send events to the project."""
    environment: str = "production"
    """SENTRY_ENVIRONMENT."""
    release: str | None = None
    """SENTRY_RELEASE; defaults to the package version."""


DEFAULT_WEBHOOK_RETRY_SCHEDULE = "5s,5m,30m,2h,5h,10h,14h,20h,24h"


@dataclass(frozen=True, slots=True)
class PaymentSettings:
    gateway: str = "sandbox"
    """Which provider charges cards (MARKET_PAYMENT_GATEWAY): `sandbox` (embedded default) or `stripe`."""
    webhook_secret: str | None = field(default=None, repr=False)
    """Verifies provider webhook signatures (MARKET_PAYMENT_WEBHOOK_SECRET). None: derived from the secret
    key, which suits the sandbox (it signs its own events)."""
    stripe_api_key: str | None = field(default=None, repr=False)
    """Stripe secret key (STRIPE_API_KEY), needed when the gateway is `stripe`."""
    reconcile_interval_s: int = 60
    """How often unsettled orders are reconciled with the provider (MARKET_RECONCILE_INTERVAL, seconds)."""


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    retry_schedule_s: tuple[int, ...] = (5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)
    """Delays before each retry of a failed seller webhook delivery (MARKET_WEBHOOK_RETRY_SCHEDULE)."""
    allow_private: bool = False
    """Permit loopback/private/link-local targets (MARKET_WEBHOOKS_ALLOW_PRIVATE=1): development and tests only."""


@dataclass(frozen=True, slots=True)
class BackupSettings:
    directory: Path = Path("var/backups")
    """Where `market backup` writes archives and looks for them (MARKET_BACKUP_DIR)."""
    retention_days: int = 30
    """`market backup prune` deletes backups older than this, never the newest verified one
    (MARKET_BACKUP_RETENTION_DAYS)."""
    schedule: time | None = None
    """UTC time of day at which a service worker takes the daily backup (MARKET_BACKUP_SCHEDULE, HH:MM).
    None: no in-process schedule (use `market backup schedule` or a CronJob instead)."""


@dataclass(frozen=True, slots=True)
class AnalyticsSettings:
    retention_days: int = 400
    """Analytics events older than this are deleted by `market analytics prune` and by the service's
    housekeeping (MARKET_ANALYTICS_RETENTION_DAYS). The default keeps a year to compare against."""
    cart_abandon_after_s: int = 86400
    """A cart with no checkout this long after its last addition counts as abandoned in the carts report
    (MARKET_CART_ABANDON_AFTER: seconds, or 30m, 24h, 2d)."""


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


@dataclass(frozen=True, slots=True)
class AlertSettings:
    eval_interval_s: int = 15
    """How often the in-process alert rules are evaluated (MARKET_ALERT_EVAL_INTERVAL, seconds)."""
    slack_webhook_url: str | None = field(default=None, repr=False)
    """Slack-compatible incoming webhook that gets a message when an alert fires and when it resolves
    (MARKET_ALERT_SLACK_WEBHOOK_URL). It is a secret: never logged."""
    smtp: SmtpURL | None = None
    """The SMTP server alert e-mails go through (MARKET_ALERT_SMTP_URL); None: no e-mails."""
    email_to: tuple[str, ...] = ()
    """Recipients of alert e-mails (MARKET_ALERT_EMAIL_TO, comma-separated); needed with MARKET_ALERT_SMTP_URL."""
    email_from: str | None = None
    """Sender of alert e-mails (MARKET_ALERT_EMAIL_FROM); None: `market@<host name>`."""

    @classmethod
    def from_env(cls, env: _Env) -> AlertSettings:
        slack = env.str("MARKET_ALERT_SLACK_WEBHOOK_URL", "") or None
        slack_parts = urlsplit(slack or "")
        if slack and (slack_parts.scheme.lower() not in ("http", "https") or not slack_parts.hostname):
            raise ConfigError("MARKET_ALERT_SLACK_WEBHOOK_URL: expected an http(s) URL")
        smtp_raw = env.str("MARKET_ALERT_SMTP_URL", "")
        to = tuple(a.strip() for a in env.str("MARKET_ALERT_EMAIL_TO", "").split(",") if a.strip())
        if smtp_raw and not to:
            raise ConfigError("MARKET_ALERT_EMAIL_TO: required when MARKET_ALERT_SMTP_URL is set")
        if to and not smtp_raw:
            raise ConfigError("MARKET_ALERT_SMTP_URL: required when MARKET_ALERT_EMAIL_TO is set")
        if bad := [a for a in to if "@" not in a]:
            raise ConfigError(f"MARKET_ALERT_EMAIL_TO: not an e-mail address: {bad[0]!r}")
        return cls(
            eval_interval_s=env.int("MARKET_ALERT_EVAL_INTERVAL", 15, minimum=1, maximum=3600),
            slack_webhook_url=slack,
            smtp=SmtpURL.parse(smtp_raw) if smtp_raw else None,
            email_to=to,
            email_from=env.str("MARKET_ALERT_EMAIL_FROM", "") or None,
        )


@dataclass(frozen=True, slots=True)
class Rate:
    """At most `count` hits per `window_s` seconds (written `20/1m`, `10/15m`, `30/1h`)."""

    count: int
    window_s: int

    @classmethod
    def parse(cls, raw: str, variable: str) -> Rate:
        count, sep, window = raw.strip().lower().partition("/")
        unit = _DURATION.get(window[-1:], 0) if window and not window.isdigit() else 1
        number = window if window.isdigit() else window[:-1]
        if not sep or not count.isdigit() or int(count) < 1 or not unit or not number.isdigit():
            raise ConfigError(f"{variable}: expected a rate like 20/1m (hits per window), got {raw!r}")
        window_s = int(number) * unit
        if not 1 <= window_s <= 86400:
            raise ConfigError(f"{variable}: the window must be between 1s and 1d, got {raw!r}")
        return cls(int(count), window_s)


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@dataclass(frozen=True, slots=True)
class RateLimitSettings:
    enabled: bool = True
    """MARKET_RATE_LIMITS=off turns every rate limit off (test suites, load tests); the hashing cap stays."""
    redis_url: str | None = field(default=None, repr=False)
    """MARKET_REDIS_URL: counters live in Redis, shared by every worker and replica. None: in this process's
    memory (right for one process; with N processes each allows the full limit)."""
    redis_prefix: str = "market"
    """MARKET_REDIS_PREFIX: the namespace of this deployment's keys in a shared Redis."""
    trusted_proxies: tuple[IPv4Network | IPv6Network, ...] = ()
    """MARKET_TRUSTED_PROXIES: comma-separated addresses or CIDRs of reverse proxies whose X-Forwarded-For is
    believed. Empty: the client is the socket peer and X-Forwarded-For is ignored."""
    sign_in: Rate = Rate(20, 60)
    """MARKET_RATE_LIMIT_SIGN_IN: sign-in attempts per client IP (`/auth/token` and `/admin/login` together)."""
    register: Rate = Rate(20, 3600)
    """MARKET_RATE_LIMIT_REGISTER: registrations per client IP."""
    checkout: Rate = Rate(30, 60)
    """MARKET_RATE_LIMIT_CHECKOUT: checkouts per client IP."""
    session_events: Rate = Rate(120, 60)
    """MARKET_RATE_LIMIT_SESSION_EVENTS: session event batches per client IP."""
    sign_in_concurrency: int = 2
    """MARKET_RATE_LIMIT_SIGN_IN_CONCURRENCY: sign-ins one client address may have in progress at once (per
    process); more are refused at once (429), so one address cannot fill the password-hashing queue."""
    account_failures: Rate = Rate(10, 900)
    """MARKET_RATE_LIMIT_ACCOUNT: failed sign-ins per account (e-mail), from any IP; a success clears them."""
    hash_concurrency: int = field(default_factory=_cpu_count)
    """MARKET_PASSWORD_HASH_CONCURRENCY: argon2 hashes computed at once per process (default: the CPUs)."""
    hash_wait_s: float = 2.0
    """MARKET_PASSWORD_HASH_WAIT_MS: how long a request waits for a hashing slot before a 503 (set in ms)."""

    @classmethod
    def from_env(cls, env: _Env) -> RateLimitSettings:
        defaults = cls()

        def rate(name: str, default: Rate) -> Rate:
            raw = env.str(name, "")
            return Rate.parse(raw, name) if raw else default

        redis_url = env.str("MARKET_REDIS_URL", "") or None
        if redis_url and urlsplit(redis_url).scheme.lower() not in ("redis", "rediss", "unix"):
            raise ConfigError("MARKET_REDIS_URL: expected a URL like redis://127.0.0.1:6379/0")
        proxies = []
        for part in env.str("MARKET_TRUSTED_PROXIES", "").split(","):
            if part.strip():
                try:
                    proxies.append(ip_network(part.strip(), strict=False))
                except ValueError:
                    raise ConfigError(
                        f"MARKET_TRUSTED_PROXIES: not an address or CIDR: {part.strip()!r}"
                    ) from None
        return cls(
            enabled=env.bool("MARKET_RATE_LIMITS", True),
            redis_url=redis_url,
            redis_prefix=env.str("MARKET_REDIS_PREFIX", "market") or "market",
            trusted_proxies=tuple(proxies),
            sign_in=rate("MARKET_RATE_LIMIT_SIGN_IN", defaults.sign_in),
            register=rate("MARKET_RATE_LIMIT_REGISTER", defaults.register),
            checkout=rate("MARKET_RATE_LIMIT_CHECKOUT", defaults.checkout),
            session_events=rate("MARKET_RATE_LIMIT_SESSION_EVENTS", defaults.session_events),
            sign_in_concurrency=env.int("MARKET_RATE_LIMIT_SIGN_IN_CONCURRENCY", 2, minimum=1, maximum=1000),
            account_failures=rate("MARKET_RATE_LIMIT_ACCOUNT", defaults.account_failures),
            hash_concurrency=env.int(
                "MARKET_PASSWORD_HASH_CONCURRENCY", _cpu_count(), minimum=1, maximum=256
            ),
            hash_wait_s=env.int("MARKET_PASSWORD_HASH_WAIT_MS", 2000, minimum=0, maximum=30000) / 1000,
        )


@dataclass(frozen=True, slots=True)
class Settings:
    database: DatabaseSettings
    var_dir: Path = Path("var")
    """Where the embedded default keeps its files (MARKET_VAR_DIR)."""
    server: ServerSettings = field(default_factory=ServerSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    telemetry: TelemetrySettings = field(default_factory=TelemetrySettings)
    sentry: SentrySettings = field(default_factory=SentrySettings)
    backup: BackupSettings = field(default_factory=BackupSettings)
    payments: PaymentSettings = field(default_factory=PaymentSettings)
    webhooks: WebhookSettings = field(default_factory=WebhookSettings)
    alerts: AlertSettings = field(default_factory=AlertSettings)
    analytics: AnalyticsSettings = field(default_factory=AnalyticsSettings)
    limits: RateLimitSettings = field(default_factory=RateLimitSettings)

    @property
    def public_url(self) -> str:
        return self.server.public_url or f"http://{self.server.host}:{self.server.port}"

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
        return cls(
            database=DatabaseSettings(
                url=DatabaseURL.parse(env.str("MARKET_DATABASE_URL", DEFAULT_DATABASE_URL)),
                pool_size=env.int("MARKET_DATABASE_POOL_SIZE", 10, minimum=1, maximum=1000),
                statement_timeout_s=env.duration("MARKET_DATABASE_STATEMENT_TIMEOUT", 5, minimum=1),
                lock_timeout_s=env.duration("MARKET_DATABASE_LOCK_TIMEOUT", 2, minimum=1),
                pool_timeout_s=env.duration("MARKET_DATABASE_POOL_TIMEOUT", 5, minimum=1),
            ),
            var_dir=Path(env.str("MARKET_VAR_DIR", "var")),
            server=ServerSettings(
                host=env.str("MARKET_HOST", "127.0.0.1"),
                port=env.int("MARKET_PORT", 8000, minimum=0, maximum=65535),
                public_url=env.str("MARKET_PUBLIC_URL", "").rstrip("/"),
            ),
            auth=AuthSettings(
                secret_key=secret_key(env.str("MARKET_SECRET_KEY", "")),
                token_ttl_seconds=env.int("MARKET_TOKEN_TTL_SECONDS", 3600, minimum=60, maximum=30 * 86400),
            ),
            telemetry=TelemetrySettings(
                service_name=env.str("OTEL_SERVICE_NAME", "market"),
                console=env.bool("MARKET_TELEMETRY_CONSOLE", False),
                log_level=env.choice("MARKET_LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR")),
                metrics_token=env.str("MARKET_METRICS_TOKEN", "") or None,
            ),
            sentry=SentrySettings(
                dsn=env.str("SENTRY_DSN", "") or None,
                environment=env.str("SENTRY_ENVIRONMENT", "production"),
                release=env.str("SENTRY_RELEASE", "") or None,
            ),
            payments=PaymentSettings(
                gateway=env.choice("MARKET_PAYMENT_GATEWAY", "SANDBOX", ("SANDBOX", "STRIPE")).lower(),
                webhook_secret=env.str("MARKET_PAYMENT_WEBHOOK_SECRET", "") or None,
                stripe_api_key=env.str("STRIPE_API_KEY", "") or None,
                reconcile_interval_s=env.int("MARKET_RECONCILE_INTERVAL", 60, minimum=1, maximum=86400),
            ),
            webhooks=WebhookSettings(
                retry_schedule_s=parse_durations(
                    env.str("MARKET_WEBHOOK_RETRY_SCHEDULE", DEFAULT_WEBHOOK_RETRY_SCHEDULE),
                    "MARKET_WEBHOOK_RETRY_SCHEDULE",
                ),
                allow_private=env.bool("MARKET_WEBHOOKS_ALLOW_PRIVATE", False),
            ),
            backup=BackupSettings(
                directory=Path(env.str("MARKET_BACKUP_DIR", "") or "var/backups"),
                retention_days=env.int("MARKET_BACKUP_RETENTION_DAYS", 30, minimum=1, maximum=36500),
                schedule=(
                    parse_utc_time(raw, "MARKET_BACKUP_SCHEDULE")
                    if (raw := env.str("MARKET_BACKUP_SCHEDULE", ""))
                    else None
                ),
            ),
            alerts=AlertSettings.from_env(env),
            analytics=AnalyticsSettings(
                retention_days=env.int("MARKET_ANALYTICS_RETENTION_DAYS", 400, minimum=1, maximum=36500),
                cart_abandon_after_s=env.duration("MARKET_CART_ABANDON_AFTER", 86400),
            ),
            limits=RateLimitSettings.from_env(env),
        )


class _Env:
    """Typed reads with one-line errors naming the variable."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = values

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
        raise ConfigError(f"{name}: expected 1/0 or true/false, got {raw!r}")

    def duration(self, name: str, default: int, *, minimum: int = 0) -> int:
        """Seconds, written as a whole number of seconds or with a unit: 90s, 30m, 24h, 2d."""
        raw = self._values.get(name, "").strip().lower()
        if raw == "":
            return default
        unit = _DURATION.get(raw[-1], 0) if not raw.isdigit() else 1
        number = raw if raw.isdigit() else raw[:-1]
        if not unit or not number.isdigit() or int(number) * unit > 10 * 365 * 86400:
            raise ConfigError(f"{name}: expected a duration like 86400, 30m, 24h or 2d, got {raw!r}")
        if int(number) * unit < minimum:
            raise ConfigError(f"{name}: must be at least {minimum} s, got {raw!r}")
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


def parse_durations(raw: str, variable: str) -> tuple[int, ...]:
    """`5s,5m,30m,2h` -> (5, 300, 1800, 7200) seconds."""
    delays: list[int] = []
    for part in raw.split(","):
        part = part.strip().lower()
        unit = _DURATION.get(part[-1:]) if part else None
        if unit is None or not part[:-1].isdigit() or int(part[:-1]) == 0:
            raise ConfigError(f"{variable}: expected durations like 5s,5m,2h, got {raw!r}")
        delays.append(int(part[:-1]) * unit)
    return tuple(delays)
