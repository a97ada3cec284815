"""Per-upload locks in Redis, with expiry, renewal and release requests.

A lock is a Redis string holding a random token, set with NX and a TTL. The holder
keeps a local validity deadline (monotonic clock) so that the hot path can check it
before every block without a round trip, and renews it (in Redis, checking the token)
well before it runs out. A request that wants a lock held by someone else sets the
upload's *release* key; the holder sees it at its next renewal, commits what it has
and lets go — this is how a new request takes over from one whose client vanished,
across workers and hosts.

When the process runs a :class:`~store.liveness.Liveness`, the lock's value names the
holder's instance, and a newcomer takes over at once a lock whose holder is dead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from protocol.errors import Locked

from .cancellation import stop_if_cancelled
from .keys import instance_key, lock_key, release_key
from .liveness import Liveness
from .liveness import current as current_liveness
from .replication import ReplicatedWrites
from .scripts import LuaScript
from .topology import UNAVAILABLE, RedisClient

log = logging.getLogger("tus_staging.store")

# KEYS[1] lock, KEYS[2] release request; ARGV[1] token, ARGV[2] ttl ms.
# Returns {-1, 0} when the token no longer holds the lock, else {whether a release was
# asked, ms the lock has left}. The TTL is extended only once half of it has run out:
# most renewals are then reads, which append nothing to Redis's AOF, so they cost no
# fsync (with appendfsync always, each write's fsync stalls every other Redis client).
_RENEW = LuaScript("""
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return {-1, 0} end
local left = redis.call('PTTL', KEYS[1])
if left < tonumber(ARGV[2]) / 2 then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    left = tonumber(ARGV[2])
end
return {redis.call('EXISTS', KEYS[2]), left}
""")

# KEYS[1] lock; ARGV[1] token. Deletes the lock only if we still hold it.
_RELEASE = LuaScript("""
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
""")


class LockLost(Exception):
    """The lock expired or was taken: the holder must stop writing at once."""


@dataclass(frozen=True)
class LockSettings:
    # Seconds a lock lives without renewal. A dead holder's lock is taken over through its
    # instance key (store/liveness.py) long before; the TTL is the last resort (a holder
    # without liveness) and must outlast any stall of a live holder's renewals.
    ttl: float = 30.0
    renew_every: float = 1.0  # how often a streaming holder renews (and sees release asks)
    wait: float = 20.0  # how long a newcomer waits before answering 423


class UploadLock:
    """One held lock. Create with :func:`acquire_lock`."""

    def __init__(
        self,
        redis: RedisClient,
        upload_id: str,
        token: str,
        settings: LockSettings,
        liveness: Liveness | None = None,
        writes: ReplicatedWrites | None = None,
    ):
        self.redis = redis
        self.liveness = liveness
        self.writes = writes
        self.generation = liveness.generation if liveness is not None else 0
        self.upload_id = upload_id  # or any name sharing the upload key scheme (destinations)
        self.token = token
        self.settings = settings
        self.release_requested = False
        self.waited = False  # the lock was busy when first asked for
        self._valid_until = 0.0
        self._renewed_at = 0.0
        self._mark_renewed(time.monotonic())

    @property
    def key(self) -> str:
        return lock_key(self.upload_id)

    def _mark_renewed(self, started: float, left: float | None = None) -> None:
        # Validity counts from when the renewal was *sent*, with a margin for clock drift.
        self._renewed_at = started
        left = self.settings.ttl if left is None else left
        self._valid_until = started + left - self.settings.ttl * 0.2

    def check_valid(self) -> None:
        """Local, round-trip-free check; raises LockLost once validity has run out."""
        if time.monotonic() >= self._valid_until:
            raise LockLost(f"lock on upload {self.upload_id} ran out")
        live = self.liveness
        if live is not None and (live.generation != self.generation or not live.alive()):
            raise LockLost(f"this process was taken for dead; lock on {self.upload_id} is void")

    def check_liveness(self) -> None:
        live = self.liveness
        if live is not None and live.generation != self.generation:
            self._valid_until = 0.0
            raise LockLost(f"this process was taken for dead; lock on {self.upload_id} is void")

    def renewal_due(self) -> bool:
        return time.monotonic() - self._renewed_at >= self.settings.renew_every

    async def renew(self) -> None:
        self.check_liveness()
        started = time.monotonic()
        asked, left_ms = await _RENEW.run(
            self.redis,
            [self.key, release_key(self.upload_id)],
            [self.token, int(self.settings.ttl * 1000)],
        )
        if int(asked) < 0:
            self._valid_until = 0.0
            raise LockLost(f"lock on upload {self.upload_id} was lost")
        self._mark_renewed(started, int(left_ms) / 1000)
        self.release_requested = bool(int(asked))

    async def release(self) -> None:
        """Let go (never raises for an unreachable Redis: see release_when_back)."""
        self._valid_until = 0.0
        try:
            if self.writes is not None:
                # Replicated before anyone is answered: a release lost in a failover would
                # leave the upload locked by a live process that holds nothing, until the TTL.
                await self.writes.script(_RELEASE, [self.key], [self.token])
            else:
                await _RELEASE.run(self.redis, [self.key], [self.token])
        except UNAVAILABLE as error:
            log.warning("lock on %s not released yet: %s", self.upload_id, error)
            release_when_back(self.redis, self.upload_id, self.token, self.settings, self.liveness)


def release_when_back(
    redis: RedisClient,
    name: str,
    token: str,
    settings: LockSettings,
    liveness: Liveness | None,
) -> None:
    """Release the lock ``token`` may hold as soon as Redis answers again.

    While Redis is away (failing over, say) this process, alive, cannot let go of a lock
    it no longer uses, and a newcomer would wait out the lock's whole TTL. The release
    is token-guarded, so it is safe whenever it runs (the TTL frees the lock at the
    latest)."""
    if liveness is not None:
        liveness.retry_later(lambda: _RELEASE.run(redis, [lock_key(name)], [token]), settings.ttl)


async def renew_between(lock: UploadLock, step: Callable[[], int]) -> int:
    """Run ``step`` (one block of blocking work, answering how many bytes it handled, 0
    at the end) in a worker thread, one hop per block, until it answers 0, checking the
    lock and renewing it between blocks. Returns the bytes handled in all. For loops
    that read or copy a whole file under a lock."""
    total = 0
    while count := await asyncio.to_thread(step):
        total += count
        lock.check_valid()
        if lock.renewal_due():
            await lock.renew()
    return total


@contextlib.asynccontextmanager
async def keep_renewed(*locks: UploadLock) -> AsyncIterator[None]:
    """Renew ``locks`` in the background while the body awaits one long blocking step (a
    copy across filesystems, a digest recomputed from disk) that cannot renew between
    blocks; without it a step longer than the TTL would let a second writer in."""

    async def renew_forever() -> None:
        every = min(lock.settings.renew_every for lock in locks)
        while True:
            await asyncio.sleep(every)
            for lock in locks:
                await lock.renew()
                stop_if_cancelled()

    task = asyncio.create_task(renew_forever())
    try:
        yield
    finally:
        task.cancel()
        await asyncio.wait([task])
    # A renewal that failed (the lock was lost meanwhile) surfaces here, not silently.
    failure = None if task.cancelled() else task.exception()
    if failure is not None:
        raise failure


async def acquire_lock(
    redis: RedisClient,
    upload_id: str,
    settings: LockSettings,
    liveness: Liveness | None = None,
    writes: ReplicatedWrites | None = None,
) -> UploadLock:
    """Take the upload's lock, asking a current holder to release; 423 after settings.wait.

    ``liveness`` defaults to this process's (see store/liveness.py); with ``writes``, the
    release waits for a replica (see store/replication.py)."""
    liveness = liveness or current_liveness()
    secret = secrets.token_hex(16)
    token = f"{liveness.instance_id}:{secret}" if liveness is not None else secret
    deadline = time.monotonic() + settings.wait
    pause = 0.02
    waited = False

    async def held(since: float) -> UploadLock:
        # A release request left over from an earlier contest is not meant for us.
        await redis.delete(release_key(upload_id))
        lock = UploadLock(redis, upload_id, token, settings, liveness, writes)
        lock._mark_renewed(since)
        lock.waited = waited
        return lock

    try:
        while True:
            started = time.monotonic()
            if await redis.set(lock_key(upload_id), token, nx=True, px=int(settings.ttl * 1000)):
                return await held(started)
            holder = await redis.get(lock_key(upload_id))
            if holder is None:
                continue  # released meanwhile: try again at once
            if holder == token.encode():
                return await held(started)  # our own SET, sent again after its answer was lost
            waited = True
            if await _took_over_from_dead_holder(redis, upload_id, holder):
                continue
            # Ask (again: the holder may have changed) and wait; the ask expires by itself.
            await redis.set(release_key(upload_id), b"1", px=int(settings.ttl * 1000))
            if time.monotonic() + pause > deadline:
                raise Locked(
                    f"upload {upload_id} is busy with another request; retry in a few seconds",
                    {"Retry-After": "2"},
                )
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.25)
    except UNAVAILABLE:
        # A SET whose answer was lost with Redis may have taken the lock for us.
        release_when_back(redis, upload_id, token, settings, liveness)
        raise


async def _took_over_from_dead_holder(redis: RedisClient, upload_id: str, holder: bytes) -> bool:
    instance, sep, _ = holder.decode(errors="replace").partition(":")
    if not sep:
        return False  # a holder without liveness: only its TTL frees the lock
    # Two single-key steps (Redis Cluster keeps the lock and the instance key in different
    # slots). Safe: an instance key never comes back once expired — its owner's refresh
    # (SET XX) fails and voids every lock it held — so "gone now" means "dead for good".
    if await redis.exists(instance_key(instance)):
        return False
    return bool(await _RELEASE.run(redis, [lock_key(upload_id)], [holder]))
