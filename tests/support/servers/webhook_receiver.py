"""A seller's webhook endpoint for tests: a real HTTP server on 127.0.0.1 in a thread, recording every request.

It answers each POST with the next status of `respond_with(...)` (then the default); a 3xx carries a Location.
`stop()` closes the port (a receiver that is down refuses connections); `start()` opens it again, on the same port.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    """Lower-cased names."""
    body: bytes
    at: float
    """time.monotonic() on arrival."""


class WebhookReceiver:
    def __init__(self, status: int = 200, port: int = 0) -> None:
        self.default_status = status
        self.port = port
        self.requests: list[Received] = []
        self._script: list[int] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/market"

    def respond_with(self, *statuses: int) -> None:
        """Answer the next requests with these statuses, in order (then `default_status`)."""
        with self._lock:
            self._script = list(statuses)

    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                with receiver._lock:
                    receiver.requests.append(
                        Received(
                            self.path, {k.lower(): v for k, v in self.headers.items()}, body, time.monotonic()
                        )
                    )
                    status = receiver._script.pop(0) if receiver._script else receiver.default_status
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", "/elsewhere")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def received(self) -> list[Received]:
        with self._lock:
            return list(self.requests)

    def wait_for(self, count: int, timeout: float = 15.0) -> list[Received]:
        """At least `count` requests, or an AssertionError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.received()
            if len(got) >= count:
                return got
            time.sleep(0.05)
        raise AssertionError(
            f"expected {count} webhook requests within {timeout} s, got {len(self.received())}"
        )


@contextmanager
def running_receiver(status: int = 200) -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver(status).start()
    try:
        yield receiver
    finally:
        receiver.stop()


def down_receiver_port() -> WebhookReceiver:
    """A receiver that is not listening (yet): its port was bound once and released."""
    receiver = WebhookReceiver().start()
    receiver.stop()
    return receiver
