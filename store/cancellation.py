"""Background loops that stop when they are cancelled, whatever swallowed the cancel.

A cancel that arrives while redis-py awaits its connection can be swallowed there: the
call returns, or fails with one of redis-py's own errors, instead of raising
CancelledError (seen with a worker's liveness loop: its clean stop then waited for the
worker's whole graceful timeout). A loop that goes on after such a call would run
forever, and whoever awaits its end would wait for it. Such loops call
:func:`stop_if_cancelled` after each of those calls.
"""

from __future__ import annotations

import asyncio


def stop_if_cancelled() -> None:
    """Raise CancelledError if the current task was asked to stop (even if that request
    was since swallowed by a library)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
