"""Per-user limits on unfinished uploads: how many may be open, and how many bytes they
may reserve (their declared lengths), so that one user cannot fill Redis or the disk.

Each user has one Redis hash, upload id -> bytes reserved, changed by one script that
checks both limits and reserves in the same step (a single key: valid on Redis Cluster).
An upload reserves at creation (0 while its length is deferred, its length once
declared) and gives its reservation back when it is staged, terminated or expires. A
reservation whose record is gone (a crash between the two steps) is pruned by the
janitor, which finds the users' hashes through one set of the users who ever reserved
(one key: no scan of every key of every master of a cluster).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from protocol.errors import InsufficientStorage, TusError

from .keys import QUOTA_USERS_KEY, user_uploads_key
from .scripts import LuaScript
from .topology import RedisClient

# KEYS[1] the user's hash; ARGV[1] upload id, ARGV[2] bytes, ARGV[3] max open (-1: none),
# ARGV[4] max bytes (-1: none). -1: too many open; -2: too many bytes; else 1.
_RESERVE = LuaScript("""
local open = redis.call('HLEN', KEYS[1])
local mine = redis.call('HGET', KEYS[1], ARGV[1])
if not mine and tonumber(ARGV[3]) >= 0 and open >= tonumber(ARGV[3]) then return -1 end
local total = 0
for _, value in ipairs(redis.call('HVALS', KEYS[1])) do total = total + tonumber(value) end
if mine then total = total - tonumber(mine) end
if tonumber(ARGV[4]) >= 0 and total + tonumber(ARGV[2]) > tonumber(ARGV[4]) then return -2 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
""")


class TooManyUploads(TusError):
    default_status = 429


MAX_OPEN_UPLOADS = 1000  # unfinished uploads of one user
MAX_RESERVED_BYTES = 5 * 1024**4  # 5 TiB of unfinished uploads of one user


@dataclass(frozen=True)
class UserLimits:
    max_open_uploads: int | None = MAX_OPEN_UPLOADS  # None: no limit
    max_reserved_bytes: int | None = MAX_RESERVED_BYTES


class Quotas:
    def __init__(self, redis: RedisClient, limits: UserLimits):
        self.redis = redis
        self.limits = limits

    async def reserve(self, user: str, upload_id: str, size: int) -> None:
        """Count ``upload_id`` as open with ``size`` bytes reserved, or refuse (429/507)."""
        limits = self.limits
        # Listed before the reservation exists, so that prune() always finds it.
        await self.redis.sadd(QUOTA_USERS_KEY, user)
        answer = int(
            await _RESERVE.run(
                self.redis,
                [user_uploads_key(user)],
                [
                    upload_id,
                    size,
                    -1 if limits.max_open_uploads is None else limits.max_open_uploads,
                    -1 if limits.max_reserved_bytes is None else limits.max_reserved_bytes,
                ],
            )
        )
        if answer == -1:
            raise TooManyUploads(
                f"you have {limits.max_open_uploads} unfinished uploads already: "
                "finish or delete some first",
                {"Retry-After": "60"},
            )
        if answer == -2:
            raise InsufficientStorage(
                f"your unfinished uploads would reserve more than {limits.max_reserved_bytes} "
                "bytes: finish or delete some first"
            )

    async def release(self, user: str, upload_id: str) -> None:
        await self.redis.hdel(user_uploads_key(user), upload_id)

    async def prune(self, exists: Callable[[str], Awaitable[bool]]) -> int:
        """Drop reservations whose upload no longer exists (a crash between the two steps of
        a creation or a removal); returns how many."""
        pruned = 0
        async for user in self.redis.sscan_iter(QUOTA_USERS_KEY, count=500):
            key = user_uploads_key(user.decode())
            for raw in await self.redis.hkeys(key):
                if not await exists(raw.decode()):
                    pruned += int(await self.redis.hdel(key, raw))
        return pruned
