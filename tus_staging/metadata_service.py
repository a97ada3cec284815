"""Metadata of staged files: the sidecar when it is fresh, else computed once, on demand.

Files that came through tus have a sidecar already. Files dropped in by other means (a
transfer service, a shell) get theirs here: one streaming pass in worker threads (one
hop per block, constant memory), cached in the sidecar keyed by size + mtime. Requests
for the same file share one computation — inside a worker through a shared future,
across workers and hosts through a Redis lock on the path, after which the sidecar
written by whoever computed it is read back.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from protocol.errors import ServiceUnavailable
from store.area_files import entry
from store.keys import metadata_lock_name
from store.layout import DataLayout
from store.locks import LockLost, LockSettings, acquire_lock, renew_between
from store.partial import StreamState
from store.sidecar import metadata_record, read_json_object, read_tail, write_json_atomically
from store.topology import RedisClient

log = logging.getLogger("tus_staging.metadata")

READ_BLOCK = 4 * 1024 * 1024
OTHER_SOURCE = "Unknown"  # as the KBase staging service says of files it did not receive
# A computation elsewhere may take minutes on a huge file: wait for it rather than redo it.
COMPUTE_WAIT = 3600.0


def is_fresh(record: dict[str, Any] | None, info: os.stat_result) -> bool:
    return (
        record is not None
        and isinstance(record.get("md5"), str)
        and record.get("size") == info.st_size
        and record.get("mtime") == int(info.st_mtime * 1000)
    )


class MetadataService:
    def __init__(self, redis: RedisClient, layout: DataLayout, digest_names: list[str]):
        self.redis = redis
        self.layout = layout
        self.digest_names = digest_names
        self.computations = 0  # passes over file contents by this worker
        self._in_flight: dict[str, asyncio.Future[dict[str, Any]]] = {}

    async def metadata(self, user: str, relative: PurePosixPath) -> dict[str, Any]:
        """The record for a file or folder that exists (FileNotFoundError otherwise)."""
        path = self.layout.staged_path(user, relative)
        info = await asyncio.to_thread(os.stat, path)
        if not os.path.isfile(path):
            return await asyncio.to_thread(entry, path, self.layout.user_home(user), info)
        sidecar = self.layout.sidecar_path(user, relative)
        cached = await asyncio.to_thread(read_json_object, sidecar)
        if is_fresh(cached, info):
            assert cached is not None
            return cached
        key = f"{user}/{relative}"
        pending = self._in_flight.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._compute_once(user, relative, path, sidecar))
            self._in_flight[key] = pending
            pending.add_done_callback(lambda _: self._in_flight.pop(key, None))
        return await asyncio.shield(pending)

    async def _compute_once(
        self, user: str, relative: PurePosixPath, path: Path, sidecar: Path
    ) -> dict[str, Any]:
        lock = await acquire_lock(
            self.redis, metadata_lock_name(user, str(relative)), LockSettings(wait=COMPUTE_WAIT)
        )
        try:
            info = await asyncio.to_thread(os.stat, path)
            cached = await asyncio.to_thread(read_json_object, sidecar)
            if is_fresh(cached, info):  # another worker computed it while we waited
                assert cached is not None
                return cached
            self.computations += 1
            log.info("computing metadata of %s/%s (%d bytes)", user, relative, info.st_size)
            stream = StreamState.fresh(self.digest_names)
            handle: BinaryIO = await asyncio.to_thread(open, path, "rb")
            try:
                size = await renew_between(lock, lambda: _feed_block(handle, stream))
            except LockLost as error:  # Redis unreachable for most of a lock's TTL
                raise ServiceUnavailable(f"metadata of {relative} not computed: {error}") from None
            finally:
                await asyncio.to_thread(handle.close)
            scan = stream.scanner.finish()
            tail = await asyncio.to_thread(read_tail, path, size) if scan.is_text else b""
            record = metadata_record(
                user=user,
                relative=relative,
                size=size,
                mtime=info.st_mtime,
                digests={n: d.hexdigest() for n, d in stream.digests.items()},
                scan=scan,
                tail_bytes=tail,
                upload_id=None,
                source=OTHER_SOURCE,
            )
            after = await asyncio.to_thread(os.stat, path)
            if (
                (after.st_size, after.st_mtime_ns)
                == (info.st_size, info.st_mtime_ns)
                == (
                    size,
                    info.st_mtime_ns,
                )
            ):
                await asyncio.to_thread(write_json_atomically, sidecar, record)
            return record  # a file that changed while read is not cached
        finally:
            await lock.release()


def _feed_block(handle: BinaryIO, stream: StreamState) -> int:
    block = handle.read(READ_BLOCK)
    if block:
        stream.feed_all([block])  # text: scanned beside the hashing, as uploads are
    return len(block)
