"""Upload lifecycle events in a Redis Stream, for importers and the post-finish hook.

Every created / finished / terminated / expired upload is appended to the stream
``tus-staging:{events}`` with the user, the staged path, the size and the md5, so that
importers can consume finished files with XREAD/XREADGROUP instead of polling the disk.

The stream is capped (approximately :data:`STREAM_MAXLEN` entries) and no user may hold
more than :data:`USER_MAXLEN` of them: each user's entry ids are listed beside the stream
and a user past the share loses their own oldest entries, so one user creating uploads
in a loop cannot push everyone else's "finished" events out of the stream.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis.exceptions

from .keys import EVENTS_STREAM_KEY, events_user_key
from .record import UploadRecord
from .scripts import LuaScript
from .topology import RedisClient

log = logging.getLogger("tus_staging.events")

STREAM_MAXLEN = 100_000
USER_MAXLEN = 10_000
USER_INDEX_TTL = 30 * 24 * 3600.0  # an idle user's index goes after a month

# KEYS[1] stream, KEYS[2] the user's entry ids; ARGV[1] stream cap, ARGV[2] user cap,
# ARGV[3] index ttl ms, ARGV[4..] field/value pairs. Returns the new entry's id.
_APPEND = LuaScript("""
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', unpack(ARGV, 4))
redis.call('RPUSH', KEYS[2], id)
while redis.call('LLEN', KEYS[2]) > tonumber(ARGV[2]) do
    redis.call('XDEL', KEYS[1], redis.call('LPOP', KEYS[2]))
end
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return id
""")

Listener = Callable[[dict[str, Any]], Awaitable[None]]


def event_fields(kind: str, record: UploadRecord, now: float) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(record.result) if record.result else {}
    return {
        "event": kind,
        "uploadId": record.id,
        "user": record.owner,
        "path": f"{record.owner}/{record.destination}" if record.destination else "",
        "size": record.length if record.length is not None else record.offset,
        "md5": result.get("md5", ""),
        "protocol": record.protocol,
        "time": int(now * 1000),
    }


class Events:
    def __init__(
        self,
        redis: RedisClient,
        on_finished: Listener | None = None,
        count: Callable[[str], None] | None = None,
    ):
        self.redis = redis
        self.on_finished = on_finished  # the post-finish hook
        self.count = count  # a metric, per kind

    async def emit(self, kind: str, record: UploadRecord) -> None:
        fields = event_fields(kind, record, time.time())
        if self.count is not None:
            self.count(kind)
        pairs: list[str] = []
        for name, value in fields.items():
            pairs += [name, str(value)]
        try:
            await _APPEND.run(
                self.redis,
                [EVENTS_STREAM_KEY, events_user_key(record.owner)],
                [STREAM_MAXLEN, USER_MAXLEN, int(USER_INDEX_TTL * 1000), *pairs],
            )
        except redis.exceptions.RedisError:
            # The upload itself is done and durable; a lost event must not fail it.
            log.exception("could not append %s event of upload %s", kind, record.id)
        if kind == "finished" and self.on_finished is not None:
            await self.on_finished(fields)
