"""Stopping background tasks with a deadline, whatever they are awaiting."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

log = logging.getLogger(__name__)

STOP_DEADLINE_S = 2.0
"""How long cancelled background tasks get to unwind (release connections, close clients)."""


async def cancel_and_wait(
    tasks: Iterable[asyncio.Task[object] | None], deadline_s: float = STOP_DEADLINE_S
) -> None:
    """Cancel `tasks` and wait up to `deadline_s` for them to end. A task still running after that (one
    that swallowed its cancellation, or awaits something that ignores it) is logged and left behind: a
    shutdown must end."""
    running = {task for task in tasks if task is not None and not task.done()}
    for task in running:
        task.cancel()
    if not running:
        return
    _, pending = await asyncio.wait(running, timeout=deadline_s)
    for task in pending:
        log.error("background task did not stop in time; abandoned", extra={"task": task.get_name()})
