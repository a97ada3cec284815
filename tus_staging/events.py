"""Upload lifecycle events: a Redis Stream for importers, metrics, and the post-finish hook.

Every created / finished / terminated / expired upload is appended to the stream
``tus-staging:events`` (capped, approximately, at ``STREAM_MAXLEN`` entries) with the
user, the staged path, the size and the md5, so that importers can consume finished
files with XREAD/XREADGROUP instead of polling the disk.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis.exceptions
from redis.asyncio import Redis

from store.record import KEY_PREFIX, UploadRecord

from .metrics import UPLOAD_EVENTS

log = logging.getLogger("tus_staging.events")

EVENTS_STREAM = f"{KEY_PREFIX}:events"
STREAM_MAXLEN = 100_000

Hook = Callable[[dict[str, Any]], Awaitable[None]]


def event_fields(kind: str, record: UploadRecord) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(record.result) if record.result else {}
    return {
        "event": kind,
        "uploadId": record.id,
        "user": record.owner,
        "path": f"{record.owner}/{record.destination}" if record.destination else "",
        "size": record.length if record.length is not None else record.offset,
        "md5": result.get("md5", ""),
        "time": int(time.time() * 1000),
    }


class Events:
    def __init__(self, redis: Redis, post_finish: Hook | None = None):
        self.redis = redis
        self.post_finish = post_finish

    async def emit(self, kind: str, record: UploadRecord) -> None:
        fields = event_fields(kind, record)
        UPLOAD_EVENTS.labels(kind).inc()
        try:
            await self.redis.xadd(
                EVENTS_STREAM,
                {k: str(v) for k, v in fields.items()},
                maxlen=STREAM_MAXLEN,
                approximate=True,
            )
        except redis.exceptions.RedisError:
            # The upload itself is done and durable; a lost event must not fail it.
            log.exception("could not append %s event of upload %s", kind, record.id)
        if kind == "finished" and self.post_finish is not None:
            await self.post_finish(fields)
