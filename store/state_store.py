"""The Redis state store: upload records, guarded atomic commits, the expiry index.

Every change to an existing upload goes through one Lua script that first checks the
caller's lock token (and, for offset moves, the offset it started from), so that a
writer that lost its lock can never move the committed state.
"""

from __future__ import annotations

from redis.asyncio import Redis

from .locks import LockLost, UploadLock
from .record import EXPIRY_INDEX_KEY, UploadRecord, lock_key, upload_key

# KEYS[1] upload hash, KEYS[2] lock; ARGV[1] token, ARGV[2] expected offset ("" = any),
# ARGV[3..] field/value pairs. -1: lock not ours; -2: offset moved; -3: no such upload.
_GUARDED_UPDATE = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return -1 end
if redis.call('EXISTS', KEYS[1]) == 0 then return -3 end
if ARGV[2] ~= '' and redis.call('HGET', KEYS[1], 'offset') ~= ARGV[2] then return -2 end
if #ARGV > 2 then redis.call('HSET', KEYS[1], unpack(ARGV, 3)) end
return 1
"""

# KEYS[1] upload hash, KEYS[2] lock; ARGV[1] token.
_GUARDED_DELETE = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return -1 end
return redis.call('DEL', KEYS[1])
"""


# KEYS[1] upload hash, KEYS[2] lock. {1} when locked, else {0, HGETALL as a flat list}.
_GET_UNLESS_LOCKED = """
if redis.call('EXISTS', KEYS[2]) == 1 then return {1} end
return {0, redis.call('HGETALL', KEYS[1])}
"""


class UploadVanished(Exception):
    """The record was deleted (terminated or expired) while we held a reference."""


class StaleOffset(Exception):
    """The committed offset is not the one this writer started from."""


class StateStore:
    def __init__(self, redis: Redis):
        self.redis = redis

    async def create(self, record: UploadRecord) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(upload_key(record.id), mapping=record.to_redis())
            if record.expires is not None:
                pipe.zadd(EXPIRY_INDEX_KEY, {record.id: record.expires})
            await pipe.execute()

    async def get(self, upload_id: str) -> UploadRecord | None:
        raw = await self.redis.hgetall(upload_key(upload_id))
        return UploadRecord.from_redis(raw) if raw else None

    async def get_unless_locked(self, upload_id: str) -> tuple[bool, UploadRecord | None]:
        """(True, None) while a request holds the upload's lock; else (False, the record).

        One round trip and no write: the cheap path for HEAD when nobody is streaming."""
        answer = await self.redis.eval(
            _GET_UNLESS_LOCKED, 2, upload_key(upload_id), lock_key(upload_id)
        )
        if int(answer[0]) == 1:
            return True, None
        flat = answer[1]
        raw = dict(zip(flat[::2], flat[1::2], strict=True))
        return False, UploadRecord.from_redis(raw) if raw else None

    async def update(
        self,
        lock: UploadLock,
        fields: dict[str, bytes],
        *,
        expect_offset: int | None = None,
    ) -> None:
        """Atomically write ``fields`` if ``lock`` still holds (and the offset is expected)."""
        args: list[bytes | str] = [lock.token, "" if expect_offset is None else str(expect_offset)]
        for name, value in fields.items():
            args += [name, value]
        answer = int(
            await self.redis.eval(_GUARDED_UPDATE, 2, upload_key(lock.upload_id), lock.key, *args)
        )
        if answer == -1:
            raise LockLost(f"lock on upload {lock.upload_id} was lost before the commit")
        if answer == -2:
            raise StaleOffset(f"upload {lock.upload_id} moved past offset {expect_offset}")
        if answer == -3:
            raise UploadVanished(upload_id_gone(lock.upload_id))

    async def set_expiry(self, upload_id: str, expires: float | None) -> None:
        if expires is None:
            await self.redis.zrem(EXPIRY_INDEX_KEY, upload_id)
        else:
            await self.redis.zadd(EXPIRY_INDEX_KEY, {upload_id: expires})

    async def delete(self, lock: UploadLock) -> None:
        answer = int(
            await self.redis.eval(
                _GUARDED_DELETE, 2, upload_key(lock.upload_id), lock.key, lock.token
            )
        )
        if answer == -1:
            raise LockLost(f"lock on upload {lock.upload_id} was lost before the delete")
        await self.redis.zrem(EXPIRY_INDEX_KEY, lock.upload_id)

    async def expired_ids(self, now: float, limit: int = 100) -> list[str]:
        raw = await self.redis.zrangebyscore(EXPIRY_INDEX_KEY, 0, now, start=0, num=limit)
        return [item.decode() for item in raw]


def upload_id_gone(upload_id: str) -> str:
    return f"upload {upload_id} no longer exists"
