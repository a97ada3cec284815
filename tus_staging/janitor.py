"""The janitor: removes expired unfinished uploads (partial file and record)."""

from __future__ import annotations

import asyncio
import logging
import time

from redis.asyncio import Redis

from protocol.errors import Locked
from store.layout import DataLayout
from store.locks import LockSettings, acquire_lock
from store.partial import partial_path, remove_partial
from store.record import UploadStatus
from store.state_store import StateStore

log = logging.getLogger("tus_staging.janitor")


async def remove_expired(redis: Redis, layout: DataLayout, lock_settings: LockSettings) -> int:
    """Remove every upload past its expiry that is not complete; returns how many."""
    store = StateStore(redis)
    removed = 0
    quick = LockSettings(ttl=lock_settings.ttl, renew_every=lock_settings.renew_every, wait=0.5)
    for upload_id in await store.expired_ids(time.time(), limit=10_000):
        try:
            lock = await acquire_lock(redis, upload_id, quick)
        except Locked:
            continue  # in use right now: not abandoned
        try:
            record = await store.get(upload_id)
            if record is None or record.status is not UploadStatus.PARTIAL:
                await store.set_expiry(upload_id, None)
                continue
            if record.expires is None or record.expires > time.time():
                continue  # extended meanwhile
            await store.delete(lock)
            await asyncio.to_thread(remove_partial, partial_path(layout.upload_dir, upload_id))
            removed += 1
            log.info("removed expired upload %s of %s", upload_id, record.owner)
        finally:
            await lock.release()
    return removed
