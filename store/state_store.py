"""The upload records in Redis: reads, guarded atomic changes, and the two indexes.

Every change to an existing upload goes through one Lua script that first checks the
caller's lock token (and, for offset moves, the offset it started from), so that a
writer that lost its lock can never move the committed state. The script touches only
the upload's own keys (one hash slot). The record's writes wait for a replica where there
is one (store/replication.py): what a client is told survives a failover.

The two indexes are single sorted sets (one key each, so each in one slot of a cluster),
written by single-key commands apart from the record: an entry may outlive its record or
precede it, and the janitor drops such an entry when it meets it.
"""

from __future__ import annotations

from collections.abc import Iterable

from .keys import (
    EXPIRY_INDEX_KEY,
    FINALIZING_INDEX_KEY,
    claim_key,
    finals_key,
    lock_key,
    upload_key,
)
from .locks import LockLost, UploadLock
from .record import UploadRecord
from .replication import ReplicatedWrites, ReplicaWaitSettings
from .scripts import LuaScript
from .topology import RedisClient

# KEYS[1] upload hash, KEYS[2] lock; ARGV[1] token, ARGV[2] expected offset ("" = any),
# ARGV[3] ttl in ms for the record ("" = keep), ARGV[4] n fields to delete, then their
# names, then field/value pairs. -1: lock not ours; -2: offset moved; -3: no such upload.
# A write sent again (its answer was lost with a connection) finds the offset it set
# itself: with the token still ours nobody else moved it, so it is written again, the same.
_GUARDED_UPDATE = LuaScript("""
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return -1 end
if redis.call('EXISTS', KEYS[1]) == 0 then return -3 end
local dropped = tonumber(ARGV[4])
if ARGV[2] ~= '' then
    local offset = redis.call('HGET', KEYS[1], 'offset')
    if offset ~= ARGV[2] then
        local again = false
        for i = 5 + dropped, #ARGV - 1, 2 do
            if ARGV[i] == 'offset' and ARGV[i + 1] == offset then again = true end
        end
        if not again then return -2 end
    end
end
if dropped > 0 then redis.call('HDEL', KEYS[1], unpack(ARGV, 5, 4 + dropped)) end
if #ARGV > 4 + dropped then redis.call('HSET', KEYS[1], unpack(ARGV, 5 + dropped)) end
if ARGV[3] ~= '' then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return 1
""")

# KEYS: upload hash, lock, finals set, claim; ARGV[1] token.
_GUARDED_DELETE = LuaScript("""
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return -1 end
redis.call('DEL', KEYS[3], KEYS[4])
return redis.call('DEL', KEYS[1])
""")

# KEYS[1] upload hash, KEYS[2] lock. {1} when locked, else {0, HGETALL as a flat list}.
_GET_UNLESS_LOCKED = LuaScript("""
if redis.call('EXISTS', KEYS[2]) == 1 then return {1} end
return {0, redis.call('HGETALL', KEYS[1])}
""")


class UploadVanished(Exception):
    """The record was deleted (terminated or expired) while we held a reference."""


class StaleOffset(Exception):
    """The committed offset is not the one this writer started from."""


def upload_id_gone(upload_id: str) -> str:
    return f"upload {upload_id} no longer exists"


class StateStore:
    def __init__(self, redis: RedisClient, writes: ReplicatedWrites | None = None):
        self.redis = redis
        self.writes = writes or ReplicatedWrites(redis, ReplicaWaitSettings())

    async def create(self, record: UploadRecord) -> None:
        # The index entry first: one without its record is dropped by the janitor, while a
        # record without its entry would never expire.
        if record.expires is not None:
            await self.redis.zadd(EXPIRY_INDEX_KEY, {record.id: record.expires})
        key = upload_key(record.id)
        pairs = [item for pair in record.fields().items() for item in pair]
        await self.writes.command(key, ("HSET", key, *pairs))

    async def get(self, upload_id: str) -> UploadRecord | None:
        raw = await self.redis.hgetall(upload_key(upload_id))
        return UploadRecord.from_redis(raw) if raw else None

    async def exists(self, upload_id: str) -> bool:
        return bool(await self.redis.exists(upload_key(upload_id)))

    async def get_unless_locked(self, upload_id: str) -> tuple[bool, UploadRecord | None]:
        """(True, None) while a request holds the upload's lock; else (False, the record).

        One round trip and no write: the cheap path for HEAD when nobody is streaming."""
        answer = await _GET_UNLESS_LOCKED.run(
            self.redis, [upload_key(upload_id), lock_key(upload_id)]
        )
        if int(answer[0]) == 1:
            return True, None
        flat = answer[1]
        raw = dict(zip(flat[::2], flat[1::2], strict=True))
        return False, UploadRecord.from_redis(raw) if raw else None

    async def update(
        self,
        lock: UploadLock,
        record: UploadRecord,
        attributes: Iterable[str],
        *,
        expect_offset: int | None = None,
        drop: Iterable[str] = (),
        ttl: float | None = None,
        replicated: bool = False,
    ) -> None:
        """Write ``record``'s ``attributes`` (and remove the fields of ``drop``) in one step,
        if ``lock`` still holds and the committed offset is ``expect_offset``; ``ttl``
        (seconds) makes the record expire. ``replicated``: raise NotReplicated unless the
        online replicas acknowledged it (see store/replication.py)."""
        removed = list(record.fields(*drop)) if drop else []
        args: list[bytes | str | int] = [
            lock.token,
            "" if expect_offset is None else str(expect_offset),
            "" if ttl is None else int(ttl * 1000),
            len(removed),
            *removed,
        ]
        for name, value in record.fields(*attributes).items():
            args += [name, value]
        keys = [upload_key(record.id), lock.key]
        answer = int(await self.writes.script(_GUARDED_UPDATE, keys, args, required=replicated))
        if answer == -1:
            raise LockLost(f"lock on upload {record.id} was lost before the commit")
        if answer == -2:
            raise StaleOffset(f"upload {record.id} moved past offset {expect_offset}")
        if answer == -3:
            raise UploadVanished(upload_id_gone(record.id))

    async def delete(self, lock: UploadLock, upload_id: str) -> None:
        """Remove the record and its concatenation keys, and take it out of the indexes."""
        keys = (upload_key(upload_id), lock.key, finals_key(upload_id), claim_key(upload_id))
        answer = int(await self.writes.script(_GUARDED_DELETE, keys, [lock.token]))
        if answer == -1:
            raise LockLost(f"lock on upload {upload_id} was lost before the delete")
        await self.redis.zrem(EXPIRY_INDEX_KEY, upload_id)
        await self.redis.zrem(FINALIZING_INDEX_KEY, upload_id)

    # -- the indexes --------------------------------------------------------------------

    async def set_expiry(self, upload_id: str, expires: float | None) -> None:
        if expires is None:
            await self.redis.zrem(EXPIRY_INDEX_KEY, upload_id)
        else:
            await self.redis.zadd(EXPIRY_INDEX_KEY, {upload_id: expires})

    async def mark_finalizing(self, upload_id: str, since: float | None) -> None:
        """Index the upload as finalizing since ``since`` (the store's clock); None: not."""
        if since is not None:
            await self.redis.zadd(FINALIZING_INDEX_KEY, {upload_id: since})
        else:
            await self.redis.zrem(FINALIZING_INDEX_KEY, upload_id)

    async def expired_ids(self, now: float, limit: int) -> list[str]:
        raw = await self.redis.zrangebyscore(EXPIRY_INDEX_KEY, 0, now, start=0, num=limit)
        return [item.decode() for item in raw]

    async def finalizing_ids(self, entered_before: float, limit: int) -> list[str]:
        raw = await self.redis.zrangebyscore(
            FINALIZING_INDEX_KEY, 0, entered_before, start=0, num=limit
        )
        return [item.decode() for item in raw]

    async def open_count(self) -> int:
        """Uploads created and not yet complete (the expiry index holds exactly those)."""
        return int(await self.redis.zcard(EXPIRY_INDEX_KEY))

    # -- concatenation ------------------------------------------------------------------

    async def claim_part(self, part_id: str, final_id: str, ttl: float) -> str | None:
        """Make ``part_id`` belong to ``final_id``; None if it did, else its final's id."""
        if await self.redis.set(claim_key(part_id), final_id, nx=True, px=int(ttl * 1000)):
            return None
        owner = await self.redis.get(claim_key(part_id))
        return owner.decode() if owner is not None else None

    async def unclaim_parts(self, part_ids: list[str], final_id: str) -> None:
        """Free those of ``part_ids`` that belong to ``final_id``."""
        for part_id in part_ids:
            if await self.redis.get(claim_key(part_id)) == final_id.encode():
                await self.redis.delete(claim_key(part_id))

    async def wait_for_part(self, part_id: str, final_id: str) -> None:
        await self.redis.sadd(finals_key(part_id), final_id)

    async def finals_waiting_for(self, part_id: str) -> list[str]:
        return [raw.decode() for raw in await self.redis.smembers(finals_key(part_id))]
