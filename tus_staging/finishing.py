"""Finishing an upload: finalize it, then record and announce it exactly once.

One path for every finisher: the request that received the last byte, a HEAD or PATCH
that finds an interrupted finalize, and the janitor (which runs without ``Services``).
"""

from __future__ import annotations

import time

from redis.asyncio import Redis

from store.finalize import finalize
from store.layout import DataLayout
from store.locks import LockSettings, UploadLock
from store.partial import StreamState
from store.record import UploadRecord, UploadStatus
from store.state_store import StateStore

from .events import Events
from .metrics import FINALIZE_SECONDS
from .services import Services


async def finish(
    services: Services, lock: UploadLock, record: UploadRecord, stream: StreamState | None
) -> UploadRecord:
    """Finalize (or complete an interrupted finalize), then tell the world once."""
    return await finish_with(
        services.redis, services.store, services.layout, services.config.lock,
        services.events, lock, record, stream,
    )  # fmt: skip


async def finish_with(
    redis: Redis,
    store: StateStore,
    layout: DataLayout,
    lock_settings: LockSettings,
    events: Events | None,
    lock: UploadLock,
    record: UploadRecord,
    stream: StreamState | None,
) -> UploadRecord:
    """:func:`finish` from its parts."""
    was_complete = record.status is UploadStatus.COMPLETE
    started = time.monotonic()
    record = await finalize(redis, store, lock, record, layout, stream, lock_settings)
    if not was_complete and record.status is UploadStatus.COMPLETE:
        FINALIZE_SECONDS.observe(time.monotonic() - started)
        if events is not None:
            await events.emit("finished", record)
    return record
