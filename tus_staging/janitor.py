"""The janitor: removes expired unfinished uploads and completes interrupted finalizes.

Every worker runs the loop, but a Redis lock lets one run at a time across all workers
and hosts; ``tus-staging cleanup`` runs one pass by hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time

from redis.asyncio import Redis

from protocol.errors import Locked
from store.layout import DataLayout
from store.locks import LockSettings, acquire_lock
from store.partial import partial_path, remove_partial
from store.record import FINALIZING_INDEX_KEY, KEY_PREFIX, UploadStatus, finals_key
from store.state_store import StateStore

from .events import Events
from .finishing import finish_with

log = logging.getLogger("tus_staging.janitor")

JANITOR_LOCK_KEY = f"{KEY_PREFIX}:janitor"
# A finalize younger than this is probably still running in the request that started it.
STUCK_FINALIZE_AGE = 60.0


async def remove_expired(
    redis: Redis, layout: DataLayout, lock_settings: LockSettings, events: Events | None = None
) -> int:
    """Remove every upload past its expiry that is not complete; returns how many."""
    store = StateStore(redis)
    removed = 0
    for upload_id in await store.expired_ids(time.time(), limit=10_000):
        try:
            lock = await acquire_lock(redis, upload_id, _quick(lock_settings))
        except Locked:
            continue  # in use right now: not abandoned
        try:
            record = await store.get(upload_id)
            # Concat partials are never staged, so they go at expiry even when complete.
            if record is None or (
                record.status is not UploadStatus.PARTIAL and not record.is_partial_concat
            ):
                await store.set_expiry(upload_id, None)
                continue
            if record.expires is None or record.expires > time.time():
                continue  # extended meanwhile
            await store.delete(lock)
            await redis.delete(finals_key(upload_id))
            await asyncio.to_thread(remove_partial, partial_path(layout.upload_dir, upload_id))
            removed += 1
            log.info("removed expired upload %s of %s", upload_id, record.owner)
            if events is not None:
                await events.emit("expired", record)
        finally:
            await lock.release()
    return removed


async def complete_stuck_finalizes(
    redis: Redis,
    layout: DataLayout,
    lock_settings: LockSettings,
    min_age: float,
    events: Events | None = None,
) -> int:
    """Finish finalizes that a crash interrupted and that no client came back for."""
    store = StateStore(redis)
    done = 0
    cutoff = time.time() - min_age
    for raw in await redis.zrangebyscore(FINALIZING_INDEX_KEY, 0, cutoff, start=0, num=1000):
        upload_id = raw.decode()
        try:
            lock = await acquire_lock(redis, upload_id, _quick(lock_settings))
        except Locked:
            continue
        try:
            record = await store.get(upload_id)
            if record is None or record.status is not UploadStatus.FINALIZING:
                await redis.zrem(FINALIZING_INDEX_KEY, upload_id)
                continue
            await finish_with(redis, store, layout, lock_settings, events, lock, record, None)
            done += 1
            log.info("completed interrupted finalize of upload %s", upload_id)
        finally:
            await lock.release()
    return done


def _quick(settings: LockSettings) -> LockSettings:
    # The janitor never waits for a busy upload: busy means not abandoned.
    return LockSettings(ttl=settings.ttl, renew_every=settings.renew_every, wait=0.2)


async def janitor_pass(
    redis: Redis,
    layout: DataLayout,
    lock_settings: LockSettings,
    min_finalize_age: float,
    events: Events | None = None,
) -> tuple[int, int] | None:
    """One pass, if no other janitor is running anywhere; None when another one is."""
    token = secrets.token_hex(8)
    if not await redis.set(JANITOR_LOCK_KEY, token, nx=True, px=10 * 60 * 1000):
        return None
    try:
        expired = await remove_expired(redis, layout, lock_settings, events)
        finalized = await complete_stuck_finalizes(
            redis, layout, lock_settings, min_finalize_age, events
        )
        return expired, finalized
    finally:
        if await redis.get(JANITOR_LOCK_KEY) == token.encode():
            await redis.delete(JANITOR_LOCK_KEY)


async def janitor_loop(
    redis: Redis,
    layout: DataLayout,
    lock_settings: LockSettings,
    interval: float,
    stuck_finalize_age: float = STUCK_FINALIZE_AGE,
    events: Events | None = None,
) -> None:
    # Start at a random point so that workers started together do not all knock at once.
    await asyncio.sleep(interval * (0.5 + secrets.randbelow(1000) / 1000))
    while True:
        with contextlib.suppress(Exception):
            await janitor_pass(redis, layout, lock_settings, stuck_finalize_age, events)
        await asyncio.sleep(interval)
