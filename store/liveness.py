"""Process liveness in Redis, so that the locks of a dead process are taken over at once.

Each server process keeps a key ``tus-staging:instance:<id>`` alive (TTL a few seconds,
refreshed every second) and writes its id into every lock it takes. A newcomer that finds
a lock whose holder's key is gone knows the holder died (kill -9, crashed host) and takes
the lock over instead of waiting out the lock's TTL.

The holder side stays safe when it is only *stalled* (not dead): its locks are valid
locally only until its last successful refresh plus most of the instance TTL, and a
refresh that finds its key already expired bumps a generation counter that invalidates
every lock taken before — so a process that slept through its own death never writes
again under a lock that may have been taken over meanwhile.

A second loop, apart from the refreshes, retries the steps that could not be done while
Redis was away (releasing a lock during a failover), until they succeed or no longer
matter.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Awaitable, Callable

from .cancellation import stop_if_cancelled
from .keys import instance_key
from .topology import RedisClient

Step = Callable[[], Awaitable[object]]

# Seconds an instance key outlives its last refresh. Refreshes come every second, so a
# healthy process keeps its locks through Redis write stalls of nearly 4 s (seen at
# ~1 s with appendfsync always under heavy disk load), while a dead one's locks are
# free within this long. Each refresh is a write (an fsync in Redis): not more often.
INSTANCE_TTL = 6.0
REFRESH_EVERY = 1.0


class Liveness:
    def __init__(self, redis: RedisClient):
        self.redis = redis
        self.instance_id = secrets.token_hex(8)
        self.generation = 0
        self.valid_until = 0.0  # monotonic; locks of this instance are void after it
        self._task: asyncio.Task[None] | None = None  # the refreshes
        self._retry_task: asyncio.Task[None] | None = None
        self._later: list[tuple[Step, float]] = []  # (step, monotonic time it stops mattering)

    async def start(self) -> None:
        await self._announce()
        self._task = asyncio.create_task(self._keep_alive())
        # Apart: a step that hangs on an unreachable Redis must not delay the refreshes.
        self._retry_task = asyncio.create_task(self._retry_steps())
        _set_current(self)

    async def stop(self) -> None:
        _set_current(None)
        for task in (self._task, self._retry_task):
            if task is None:
                continue
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(Exception):
            await self.redis.delete(instance_key(self.instance_id))

    def alive(self) -> bool:
        return time.monotonic() < self.valid_until

    async def _announce(self) -> None:
        sent = time.monotonic()
        await self.redis.set(instance_key(self.instance_id), b"1", px=int(INSTANCE_TTL * 1000))
        self.valid_until = sent + INSTANCE_TTL * 0.8

    async def refresh(self) -> None:
        sent = time.monotonic()
        kept = await self.redis.set(
            instance_key(self.instance_id), b"1", px=int(INSTANCE_TTL * 1000), xx=True
        )
        if kept:
            self.valid_until = sent + INSTANCE_TTL * 0.8
            return
        # We were taken for dead: every lock we hold may be someone else's by now.
        self.generation += 1
        self.instance_id = secrets.token_hex(8)
        await self._announce()

    def retry_later(self, step: Step, within: float) -> None:
        """Run ``step`` again every ``REFRESH_EVERY`` seconds until it succeeds, for
        ``within`` seconds."""
        self._later.append((step, time.monotonic() + within))

    async def _keep_alive(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_EVERY)
            with contextlib.suppress(Exception):  # Redis down: locks lapse by themselves
                await self.refresh()
            stop_if_cancelled()

    async def _retry_steps(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_EVERY)
            pending, self._later = self._later, []
            for step, until in pending:
                if time.monotonic() >= until:
                    continue
                try:
                    await step()
                except Exception:
                    self._later.append((step, until))
                stop_if_cancelled()


_current: Liveness | None = None


def _set_current(liveness: Liveness | None) -> None:
    global _current
    _current = liveness


def current() -> Liveness | None:
    """This process's liveness, once a server started it (None in plain scripts)."""
    return _current
