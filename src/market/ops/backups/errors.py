"""The one exception of the backup adapter."""

from __future__ import annotations


class BackupError(Exception):
    """A backup operation could not be done. The message is one line an operator can act on; nothing was
    left half-done (no partial archive, an untouched target)."""

    def __init__(self, detail: str) -> None:
        # One line whatever the tools printed: the CLI shows it as is.
        self.detail = " ".join(detail.split())
        super().__init__(self.detail)
