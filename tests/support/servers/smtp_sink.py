"""An SMTP server for tests: a real socket on 127.0.0.1 in a thread that accepts every message (after AUTH PLAIN or
LOGIN, when asked to require it) and records it. Plain text only: it never offers STARTTLS."""

from __future__ import annotations

import base64
import socketserver
import threading
import time
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage


@dataclass(frozen=True)
class Mail:
    sender: str
    recipients: list[str]
    message: EmailMessage
    auth: tuple[str, str] | None
    """(user, password) the client authenticated with."""


class _Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


class SmtpSink:
    def __init__(
        self, *, require_auth: tuple[str, str] | None = None, reject_with: str | None = None
    ) -> None:
        """`require_auth`: the only credentials accepted (535 otherwise); `reject_with`: answer MAIL FROM with
        this line (e.g. `550 no thanks`) instead of accepting."""
        self.require_auth = require_auth
        self.reject_with = reject_with
        self.mails: list[Mail] = []
        self._lock = threading.Lock()
        self._server: socketserver.ThreadingTCPServer | None = None
        self.port = 0

    @property
    def url(self) -> str:
        if self.require_auth:
            user, password = self.require_auth
            return f"smtp://{user}:{password}@127.0.0.1:{self.port}"
        return f"smtp://127.0.0.1:{self.port}"

    def start(self) -> SmtpSink:
        sink = self

        class Handler(socketserver.StreamRequestHandler):
            def reply(self, line: str) -> None:
                self.wfile.write(line.encode() + b"\r\n")

            def read_line(self) -> str:
                return self.rfile.readline().decode("utf-8", "replace").rstrip("\r\n")

            def handle(self) -> None:
                self.reply("220 sink ESMTP")
                sender, recipients, auth = "", [], None
                while line := self.rfile.readline():
                    command = line.decode("utf-8", "replace").rstrip("\r\n")
                    verb = command[:4].upper()
                    if verb in ("EHLO", "HELO"):
                        self.wfile.write(b"250-sink\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n")
                    elif verb == "AUTH":
                        auth = self.authenticate(command)
                        if sink.require_auth and auth != sink.require_auth:
                            self.reply("535 5.7.8 bad credentials")
                            auth = None
                        else:
                            self.reply("235 2.7.0 ok")
                    elif verb == "MAIL":
                        if sink.require_auth and auth is None:
                            self.reply("530 5.7.0 authentication required")
                        elif sink.reject_with:
                            self.reply(sink.reject_with)
                        else:
                            sender, recipients = command.split(":", 1)[1].strip().strip("<>"), []
                            self.reply("250 ok")
                    elif verb == "RCPT":
                        recipients.append(command.split(":", 1)[1].strip().strip("<>"))
                        self.reply("250 ok")
                    elif verb == "DATA":
                        self.reply("354 go on")
                        body = bytearray()
                        while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                            body += chunk[1:] if chunk.startswith(b"..") else chunk
                        message = message_from_bytes(bytes(body), policy=policy.default)
                        with sink._lock:
                            sink.mails.append(Mail(sender, recipients, message, auth))  # type: ignore[arg-type]
                        self.reply("250 queued")
                    elif verb == "QUIT":
                        self.reply("221 bye")
                        return
                    elif verb in ("RSET", "NOOP"):
                        self.reply("250 ok")
                    else:
                        self.reply("502 not implemented")

            def authenticate(self, command: str) -> tuple[str, str] | None:
                parts = command.split()
                mechanism = parts[1].upper() if len(parts) > 1 else ""
                if mechanism == "PLAIN":
                    if len(parts) > 2:
                        encoded = parts[2]
                    else:
                        self.reply("334 ")
                        encoded = self.read_line()
                    _, user, password = base64.b64decode(encoded).decode().split("\0")
                    return user, password
                if mechanism == "LOGIN":
                    self.reply("334 " + base64.b64encode(b"Username:").decode())
                    user = base64.b64decode(self.read_line()).decode()
                    self.reply("334 " + base64.b64encode(b"Password:").decode())
                    return user, base64.b64decode(self.read_line()).decode()
                return None

        self._server = _Server(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def received(self) -> list[Mail]:
        with self._lock:
            return list(self.mails)

    def wait_for(self, count: int, timeout: float = 15.0) -> list[Mail]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(got := self.received()) >= count:
                return got
            time.sleep(0.05)
        raise AssertionError(f"expected {count} e-mails within {timeout} s, got {len(self.received())}")
