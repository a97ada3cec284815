"""Background loops that stop when they are cancelled, whatever swallowed the cancel.

A cancel that arrives while redis-py awaits its connection can be swallowed there: the
call returns, or fails with one of redis-py's own errors, instead of raising
CancelledError. A loop that goes on after such a call runs forever, and whoever awaits
its end waits until something else ends it (a worker's clean stop, until its graceful
timeout runs out). Such loops call :func:`stop_if_cancelled` after each of those calls.
"""

from __future__ import annotations

import asyncio


def stop_if_cancelled() -> None:
    """Raise CancelledError if the current task was asked to stop (even if that request
    was since swallowed by a library)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
