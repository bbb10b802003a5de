"""JSON lines on stdout, every one carrying `trace_id` and `span_id` (null outside a request).

`logging_config()` is handed to uvicorn too, so its own lines are JSON as well; the access lines are written
by the edge middleware (telemetry/asgi.py), inside each request's span.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import time
from typing import Any

import msgspec
from opentelemetry import trace

# Attributes every LogRecord has; anything else was passed with `extra=` and becomes a JSON field.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "color_message"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ctx = trace.get_current_span().get_span_context()
        valid = ctx.is_valid
        entry: dict[str, Any] = {
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "trace_id": format(ctx.trace_id, "032x") if valid else None,
            "span_id": format(ctx.span_id, "016x") if valid else None,
        }
        fields = record.__dict__
        for key in fields.keys() - _STANDARD:
            if not key.startswith("_"):
                entry[key] = fields[key]
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return encode_line(entry)


def logging_config(level: str = "INFO", stream: str = "ext://sys.stdout") -> dict[str, Any]:
    """A dictConfig for the root logger and uvicorn's loggers, all to stdout as JSON (or to stderr, for
    commands whose stdout is their output)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"stdout": {"class": "logging.StreamHandler", "formatter": "json", "stream": stream}},
        "root": {"handlers": ["stdout"], "level": level},
        "loggers": {
            "uvicorn": {"handlers": ["stdout"], "level": level, "propagate": False},
            "uvicorn.error": {"handlers": ["stdout"], "level": level, "propagate": False},
            # uvicorn logs access only when this logger has handlers: none here, the edge middleware writes
            # the access lines (with the request's trace ids, without query strings).
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
            # httpx logs every request's full URL at INFO: a Slack webhook URL is a secret, and sellers put
            # tokens in their webhook URLs' queries. Our own lines name URLs through `safe_url`.
            "httpx": {"level": "WARNING"},
            "httpcore": {"level": "WARNING"},
            # aiosqlite logs every statement with its parameters at DEBUG: e-mail addresses, password hashes,
            # webhook secrets. MARKET_LOG_LEVEL=DEBUG is for our own lines, not for a dump of the database.
            "aiosqlite": {"level": "INFO"},
        },
    }


class AccessLog:
    """The one line per request, in the same JSON shape as every other line.

    Written straight to stdout: through the logging module (record, caller lookup, handler lock, formatter,
    flush) the line cost a sizeable share of a browse request's CPU (figures: benchmarks/README.md). With OTLP log export on, lines go through logging so that they are exported too.
    """

    def __init__(self, *, via_logging: bool = False) -> None:
        self._logger = logging.getLogger("market.access")
        self._via_logging = via_logging
        self._second = -1
        self._prefix = ""
        self._flush_pending = False

    def enabled(self) -> bool:
        return self._logger.isEnabledFor(logging.INFO)

    def write(self, message: str, trace_id: str | None, span_id: str | None, fields: dict[str, Any]) -> None:
        if self._via_logging:
            self._logger.info(message, extra=fields)
            return
        now = time.time()
        second = int(now)
        if second != self._second:  # formatting the date once a second is enough
            self._second, self._prefix = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        entry = {
            "timestamp": f"{self._prefix}.{int((now - second) * 1000):03d}Z",
            "level": "INFO",
            "logger": "market.access",
            "message": message,
            "trace_id": trace_id,
            "span_id": span_id,
            **fields,
        }
        sys.stdout.write(encode_line(entry) + "\n")
        self._flush_soon()

    def _flush_soon(self) -> None:
        """One flush (one write(2)) per turn of the event loop, for every line written in it, instead of one per
        line. A line waits at most until the loop's next turn; other log lines flush the same stream, in order.
        Outside a running loop, at once."""
        if self._flush_pending:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            sys.stdout.flush()
            return
        self._flush_pending = True
        loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_pending = False
        with contextlib.suppress(ValueError, OSError):  # stdout closed or gone at shutdown: nothing to do
            sys.stdout.flush()


_ENCODER = msgspec.json.Encoder(enc_hook=str)


def encode_line(entry: dict[str, Any]) -> str:
    """One JSON line, UTF-8 as is, anything JSON has no type for as its `str()`. msgspec rather than `json`:
    0.5 µs a line against 3.6 (the access line is written on every request; benchmarks/README.md). What
    msgspec will not take (a dict keyed by tuples, an integer past 64 bits in some `extra=`) goes through
    `json`: a log line must never fail."""
    try:
        return _ENCODER.encode(entry).decode()
    except (TypeError, ValueError, OverflowError):
        return json.dumps(entry, default=str, ensure_ascii=False)
