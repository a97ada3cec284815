"""Locks and guarded commits against a real Redis: a writer that lost its lock can't commit."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import pytest
from redis.asyncio import Redis

from protocol.errors import Locked
from protocol.lifecycle import UploadState
from store.liveness import Liveness, instance_key
from store.locks import (
    LockLost,
    LockSettings,
    UploadLock,
    acquire_lock,
    keep_renewed,
    renew_between,
)
from store.record import UploadRecord, new_upload_id
from store.state_store import StaleOffset, StateStore, UploadVanished
from store.topology import connect

from .servers import RedisProcess

FAST = LockSettings(ttl=0.5, renew_every=0.05, wait=0.3)


async def new_record(store: StateStore) -> UploadRecord:
    record = UploadRecord(
        id=new_upload_id(), owner="alice", length=100, offset=0, metadata="", destination="f"
    )
    await store.create(record)
    return record


async def test_record_round_trips_through_redis(redis: Redis) -> None:
    store = StateStore(redis)
    record = UploadRecord(
        id=new_upload_id(),
        owner="alice",
        length=None,
        offset=7,
        metadata="filename Zg==",
        destination="a/b/f",
        status=UploadState.FINALIZING,
        created=1.5,
        updated=2.5,
        expires=3.5,
        digest_states={"md5": b"\x00\x01state", "sha256": b"\xff" * 10},
        scan_state=b'{"x": 1}',
        partial_identity="1:2",
        result=b"{}",
    )
    await store.create(record)
    assert await store.get(record.id) == record
    assert await store.get(new_upload_id()) is None


async def test_second_acquirer_waits_then_gets_423_and_asks_for_release(redis: Redis) -> None:
    holder = await acquire_lock(redis, "u1", FAST)
    with pytest.raises(Locked) as refused:
        await acquire_lock(redis, "u1", FAST)
    assert refused.value.status == 423
    await holder.renew()
    assert holder.release_requested
    await holder.release()
    newcomer = await acquire_lock(redis, "u1", FAST)
    await newcomer.renew()
    assert not newcomer.release_requested  # a stale ask is cleared for the new holder
    await newcomer.release()


async def test_renewal_writes_only_once_half_the_ttl_has_run_out(redis: Redis) -> None:
    # Renewals are reads until then: no AOF append, so no fsync that stalls other clients.
    settings = LockSettings(ttl=10, renew_every=0.05, wait=1)
    lock = await acquire_lock(redis, "u-half", settings)
    writes_before = await _write_commands(redis)
    await asyncio.sleep(0.2)
    await lock.renew()
    assert await _write_commands(redis) == writes_before
    assert await redis.pttl(lock.key) < 9_850  # not extended
    lock.check_valid()

    await redis.pexpire(lock.key, 4_000)  # less than half left
    await lock.renew()
    assert await redis.pttl(lock.key) > 9_000  # extended to the full TTL
    await lock.release()


async def test_local_validity_follows_what_redis_says_is_left(redis: Redis) -> None:
    settings = LockSettings(ttl=1, renew_every=0.05, wait=1)
    lock = await acquire_lock(redis, "u-left", settings)
    await asyncio.sleep(0.3)
    await lock.renew()  # ~0.7 s left, not extended: valid locally for ~0.5 s more
    await asyncio.sleep(0.6)
    with pytest.raises(LockLost):
        lock.check_valid()
    await lock.release()


async def _write_commands(redis: Redis) -> int:
    stats = await redis.info("commandstats")
    return sum(stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in ("pexpire", "set"))


async def test_newcomer_gets_lock_once_holder_releases(redis: Redis) -> None:
    holder = await acquire_lock(redis, "u2", FAST)
    settings = LockSettings(ttl=5, renew_every=0.05, wait=3)

    async def holder_honours_release() -> None:
        while not holder.release_requested:
            await asyncio.sleep(0.02)
            await holder.renew()
        await holder.release()

    task = asyncio.create_task(holder_honours_release())
    newcomer = await acquire_lock(redis, "u2", settings)
    await task
    assert newcomer.token != holder.token
    await newcomer.release()


async def test_commit_refused_after_lock_expired_and_taken(redis: Redis) -> None:
    store = StateStore(redis)
    record = await new_record(store)
    stale = await acquire_lock(redis, record.id, FAST)
    await asyncio.sleep(FAST.ttl + 0.1)
    with pytest.raises(LockLost):
        stale.check_valid()  # local check, no round trip
    fresh = await acquire_lock(redis, record.id, FAST)
    await store.update(fresh, replace(record, offset=40), ["offset"], expect_offset=0)
    with pytest.raises(LockLost):
        await store.update(stale, replace(record, offset=90), ["offset"], expect_offset=0)
    with pytest.raises(LockLost):
        await stale.renew()
    current = await store.get(record.id)
    assert current is not None and current.offset == 40


async def test_commit_refused_from_stale_offset(redis: Redis) -> None:
    store = StateStore(redis)
    record = await new_record(store)
    lock = await acquire_lock(redis, record.id, FAST)
    await store.update(lock, replace(record, offset=10), ["offset"], expect_offset=0)
    with pytest.raises(StaleOffset):
        await store.update(lock, replace(record, offset=20), ["offset"], expect_offset=0)
    current = await store.get(record.id)
    assert current is not None and current.offset == 10


async def test_commit_to_deleted_upload_refused(redis: Redis) -> None:
    store = StateStore(redis)
    record = await new_record(store)
    lock = await acquire_lock(redis, record.id, FAST)
    await store.delete(lock, record.id)
    with pytest.raises(UploadVanished):
        await store.update(lock, replace(record, offset=10), ["offset"], expect_offset=0)
    assert await store.get(record.id) is None


async def test_release_does_not_free_someone_elses_lock(redis: Redis) -> None:
    stale = await acquire_lock(redis, "u3", FAST)
    await asyncio.sleep(FAST.ttl + 0.1)
    fresh = await acquire_lock(redis, "u3", FAST)
    await stale.release()
    with pytest.raises(Locked):
        await acquire_lock(redis, "u3", FAST)
    await fresh.release()


async def test_lock_of_a_dead_process_is_taken_over_before_its_ttl(redis: Redis) -> None:
    settings = LockSettings(ttl=30, renew_every=1, wait=10)
    dead = Liveness(redis)
    await dead.start()
    held = await acquire_lock(redis, "u4", settings, dead)
    assert held.token.startswith(dead.instance_id + ":")
    # The process dies: no more refreshes, its instance key lapses after INSTANCE_TTL.
    assert dead._task is not None
    dead._task.cancel()
    alive = Liveness(redis)
    await alive.start()
    started = time.monotonic()
    newcomer = await acquire_lock(redis, "u4", settings, alive)
    waited = time.monotonic() - started
    assert waited < settings.ttl  # taken over, not waited out
    assert newcomer.token.startswith(alive.instance_id + ":")
    await newcomer.release()
    await alive.stop()


async def test_a_live_holder_is_not_taken_over(redis: Redis) -> None:
    holder_liveness = Liveness(redis)
    await holder_liveness.start()
    holder = await acquire_lock(redis, "u5", FAST, holder_liveness)
    keep_renewing = asyncio.create_task(_renew_forever(holder))
    with pytest.raises(Locked):
        await acquire_lock(redis, "u5", LockSettings(ttl=0.5, renew_every=0.05, wait=1.0))
    keep_renewing.cancel()
    await holder.release()
    await holder_liveness.stop()


async def _renew_forever(lock: UploadLock) -> None:
    while True:
        await asyncio.sleep(0.05)
        await lock.renew()


async def test_a_process_taken_for_dead_stops_writing(redis: Redis) -> None:
    """A stalled (not dead) process whose instance key lapsed must not trust its old locks."""
    liveness = Liveness(redis)
    await liveness.start()
    lock = await acquire_lock(redis, "u6", LockSettings(ttl=30), liveness)
    lock.check_valid()
    await redis.delete(instance_key(liveness.instance_id))  # as if it had expired in a stall
    await liveness.refresh()
    with pytest.raises(LockLost):
        lock.check_valid()
    with pytest.raises(LockLost):
        await lock.renew()
    fresh = await acquire_lock(redis, "u7", LockSettings(ttl=30), liveness)
    fresh.check_valid()  # new locks of the re-announced instance are fine
    await liveness.stop()


async def test_keep_renewed_holds_a_lock_through_a_step_longer_than_its_ttl(
    redis: Redis,
) -> None:
    lock = await acquire_lock(redis, "u-long", FAST)
    async with keep_renewed(lock):
        await asyncio.to_thread(time.sleep, FAST.ttl * 3)  # a blocking copy, say
    assert await redis.get(lock.key) == lock.token.encode()
    lock.check_valid()
    with pytest.raises(Locked):  # nobody got in meanwhile
        await acquire_lock(redis, "u-long", FAST)
    await lock.release()


async def test_keep_renewed_reports_a_lock_lost_during_the_step(redis: Redis) -> None:
    lock = await acquire_lock(redis, "u-lost", FAST)
    with pytest.raises(LockLost):
        async with keep_renewed(lock):
            await redis.delete(lock.key)
            await asyncio.to_thread(time.sleep, FAST.renew_every * 4)


async def test_renew_between_adds_up_blocks_and_renews_between_them(redis: Redis) -> None:
    lock = await acquire_lock(redis, "u-blocks", FAST)
    blocks = [3, 5, 7]

    def step() -> int:
        time.sleep(FAST.ttl / 2)  # blocking, in a worker thread; three outlast the TTL
        return blocks.pop(0) if blocks else 0

    assert await renew_between(lock, step) == 15
    assert await redis.get(lock.key) == lock.token.encode()
    await lock.release()


async def test_a_commit_sent_again_finds_itself_applied(redis: Redis) -> None:
    """Its first answer lost with a connection, the same commit is sent again: it is the
    holder's own offset, not a stale one."""
    store = StateStore(redis)
    record = await new_record(store)
    lock = await acquire_lock(redis, record.id, FAST)
    moved = replace(record, offset=30)
    await store.update(lock, moved, ["offset"], expect_offset=0)
    await store.update(lock, moved, ["offset"], expect_offset=0)
    with pytest.raises(StaleOffset):  # another offset from 0 is still refused
        await store.update(lock, replace(record, offset=31), ["offset"], expect_offset=0)
    current = await store.get(record.id)
    assert current is not None and current.offset == 30


async def test_a_lock_left_while_redis_was_away_is_released_once_it_is_back(
    redis_proc: RedisProcess,
) -> None:
    """Otherwise a newcomer would wait out the TTL of a lock its live holder no longer uses."""
    state = await connect(redis_proc.url)  # the server's client, with its short retries
    redis = state.client
    liveness = Liveness(redis)
    await liveness.start()
    try:
        lock = await acquire_lock(redis, "u-away", LockSettings(ttl=30), liveness)
        redis_proc.stop()  # append-only: the lock is still there after the restart
        await lock.release()  # no answer: no error either, the release is kept for later
        redis_proc.start()
        assert await redis.get(lock.key) == lock.token.encode()
        deadline = time.monotonic() + 10
        while await redis.exists(lock.key):
            assert time.monotonic() < deadline, "the lock was not released after Redis came back"
            await asyncio.sleep(0.05)
    finally:
        await liveness.stop()
        await state.aclose()
