"""Finishing an upload: finalize it, then record and announce it exactly once."""

from __future__ import annotations

import time

from store.finalize import finalize
from store.locks import UploadLock
from store.partial import StreamState
from store.record import UploadRecord, UploadStatus

from .metrics import FINALIZE_SECONDS
from .services import Services


async def finish(
    services: Services, lock: UploadLock, record: UploadRecord, stream: StreamState | None
) -> UploadRecord:
    """Finalize (or complete an interrupted finalize), then tell the world once."""
    was_complete = record.status is UploadStatus.COMPLETE
    started = time.monotonic()
    record = await finalize(
        services.redis, services.store, lock, record, services.layout, stream,
        services.config.lock,
    )  # fmt: skip
    if not was_complete and record.status is UploadStatus.COMPLETE:
        FINALIZE_SECONDS.observe(time.monotonic() - started)
        await services.events.emit("finished", record)
    return record
