"""Named points where fault-injection tests make the process die (never set in production).

``TUS_STAGING_CRASH_AT=<name>`` makes the process exit at once, without cleanup, when it
reaches that point — the same effect as ``kill -9`` at the worst possible moment.
"""

from __future__ import annotations

import os

ENV = "TUS_STAGING_CRASH_AT"
CRASH_EXIT_STATUS = 137  # as if killed by SIGKILL


def crash_point(name: str) -> None:
    if os.environ.get(ENV) == name:
        os._exit(CRASH_EXIT_STATUS)
