"""Metadata of staged files: the sidecar when it is fresh, else computed once, on demand.

Files that came through tus have a sidecar already. Files dropped in by other means (a
transfer service, a shell) get theirs here: one streaming pass in worker threads (one
hop per block, constant memory), cached in the sidecar. Requests for the same file share
one computation — inside a worker through a shared future, across workers and hosts
through a Redis lock on the path, after which the sidecar written by whoever computed it
is read back.

Sidecars are the KBase staging service's metadata files (same place, keys and types):
one of ours records the size and mtime it describes, one of the KBase service's does
not and is judged as that service judges it, by its own mtime against the file's. What
a stat says (name, path, mtime, size, isFolder) is always taken from the file itself,
so a moved file's sidecar still describes it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
from pathlib import Path
from typing import Any, BinaryIO

from protocol.errors import ServiceUnavailable, TusError

from .area import AreaPath
from .area_files import entry, mtime_ms
from .area_listing import JGI_SOURCE, UNKNOWN_SOURCE, jgi_metadata_name
from .keys import metadata_lock_name
from .locks import LockLost, LockSettings, UploadLock, acquire_lock, renew_between
from .partial import READ_BLOCK, StreamState
from .sidecar import keep_tail, matches_stat, metadata_record, read_json_object, write_sidecar
from .single_flight import shared
from .topology import RedisClient

log = logging.getLogger("tus_staging.metadata")

# A computation elsewhere may take minutes on a huge file: wait for it rather than redo it.
COMPUTE_WAIT = 3600.0
# What the KBase staging service expects of a complete metadata file (all strings).
KBASE_KEYS = ("source", "md5", "lineCount", "head", "tail")
# Kept when a stale sidecar is recomputed, as the KBase service keeps them.
KEPT_KEYS = ("UPA",)
MAX_JGI_METADATA = 16 * 1024 * 1024  # bytes of a .jgi file served


def changed_since(record: dict[str, Any], info: os.stat_result, sidecar_mtime: float) -> bool:
    """Whether the file changed after ``record`` was written about it: by the size and
    mtime the record holds (our sidecars), else by the sidecar's own mtime (the KBase
    service's rule, for its sidecars)."""
    if "size" in record or "mtime" in record:
        return not matches_stat(record, info)
    return sidecar_mtime < mtime_ms(info.st_mtime) / 1000


def is_fresh(record: dict[str, Any] | None, info: os.stat_result, sidecar_mtime: float) -> bool:
    return (
        record is not None
        and all(isinstance(record.get(key), str) for key in KBASE_KEYS)
        and not changed_since(record, info, sidecar_mtime)
    )


def read_sidecar(path: Path) -> tuple[dict[str, Any] | None, float]:
    """The sidecar's record (None when missing, unreadable, or a stale folder of sidecars
    where a file is now) and its own mtime."""
    try:
        info = os.stat(path)
    except OSError:
        return None, 0.0
    if not stat.S_ISREG(info.st_mode):
        return None, 0.0
    return read_json_object(path), info.st_mtime


def read_jgi_metadata(jgi: AreaPath) -> Any:
    """The JSON document of the JGI metadata file ``jgi``; None when there is none.
    Blocking; 422 when it is too large or not JSON."""
    if not os.path.isfile(jgi.staged):
        return None
    with open(jgi.staged, "rb") as handle:
        raw = handle.read(MAX_JGI_METADATA + 1)
    if len(raw) > MAX_JGI_METADATA:
        raise TusError(f"JGI metadata over {MAX_JGI_METADATA} bytes", status=422)
    try:
        return json.loads(raw)
    except ValueError:
        raise TusError("the JGI metadata file is not valid JSON", status=422) from None


def _look(where: AreaPath) -> tuple[os.stat_result, dict[str, Any] | None, float]:
    """The file's stat, and its sidecar's record and mtime as :func:`read_sidecar` gives
    them (None, 0.0 unless it is a regular file: only those have sidecars). Blocking;
    FileNotFoundError when nothing is there."""
    info = os.stat(where.staged)
    if not stat.S_ISREG(info.st_mode):
        return info, None, 0.0
    return (info, *read_sidecar(where.sidecar))


def with_stat(record: dict[str, Any], where: AreaPath, info: os.stat_result) -> dict[str, Any]:
    """``record`` with what the file's stat says now (the KBase service does the same)."""
    return {**record, **entry(where.staged, where.home, info)}


def determine_source(where: AreaPath) -> str:
    """Where a file without a recorded source came from, as the KBase service guesses."""
    jgi = where.staged.parent / jgi_metadata_name(where.staged.name)
    return JGI_SOURCE if os.path.isfile(jgi) else UNKNOWN_SOURCE


class MetadataService:
    def __init__(self, redis: RedisClient, digest_names: list[str]):
        self.redis = redis
        self.digest_names = digest_names
        self._in_flight: dict[str, asyncio.Future[dict[str, Any]]] = {}

    async def metadata(self, where: AreaPath) -> dict[str, Any]:
        """The record of a file or folder that exists (FileNotFoundError otherwise)."""
        info, cached, sidecar_mtime = await asyncio.to_thread(_look, where)
        if not stat.S_ISREG(info.st_mode):
            return entry(where.staged, where.home, info)  # (given the stat: no I/O)
        if cached is not None and is_fresh(cached, info, sidecar_mtime):
            return with_stat(cached, where, info)
        return await shared(self._in_flight, where.user_path, lambda: self._compute_once(where))

    async def define_upa(self, where: AreaPath, upa: str) -> None:
        """Record the UPA (the workspace object made from the file) in its sidecar,
        computing the rest first if the file has no fresh sidecar yet."""
        lock = await self._lock(where)
        try:
            record, info = await self._fresh_record(where, lock)
            record["UPA"] = upa
            await asyncio.to_thread(_write_if_unchanged, where, info, record)
        finally:
            await lock.release()

    async def _lock(self, where: AreaPath) -> UploadLock:
        name = metadata_lock_name(where.user, str(where.relative))
        return await acquire_lock(self.redis, name, LockSettings(wait=COMPUTE_WAIT))

    async def _compute_once(self, where: AreaPath) -> dict[str, Any]:
        lock = await self._lock(where)
        try:
            record, _ = await self._fresh_record(where, lock)
            return record
        finally:
            await lock.release()

    async def _fresh_record(
        self, where: AreaPath, lock: UploadLock
    ) -> tuple[dict[str, Any], os.stat_result]:
        """Under the path's lock: the fresh sidecar (another worker may have computed it
        while we waited), else a new record, written as the sidecar."""
        info, cached, sidecar_mtime = await asyncio.to_thread(_look, where)
        if cached is not None and is_fresh(cached, info, sidecar_mtime):
            return with_stat(cached, where, info), info
        log.info("computing metadata of %s (%d bytes)", where.user_path, info.st_size)
        handle: BinaryIO = await asyncio.to_thread(open, where.staged, "rb")
        reading = _Pass(handle, StreamState.fresh(self.digest_names))
        try:
            size = await renew_between(lock, reading.feed_block)
        except LockLost as error:  # Redis unreachable for most of a lock's TTL
            raise ServiceUnavailable(
                f"metadata of {where.relative} not computed: {error}"
            ) from None
        finally:
            await asyncio.to_thread(handle.close)
        stream = reading.stream
        scan = stream.scanner.finish()
        tail = reading.tail if scan.is_text else b""
        # A sidecar that only lacks fields keeps its source; a stale one's is guessed anew.
        source = None
        if cached is not None and not changed_since(cached, info, sidecar_mtime):
            source = cached.get("source")
        if not isinstance(source, str):
            source = await asyncio.to_thread(determine_source, where)
        record = metadata_record(
            user=where.user,
            relative=where.relative,
            size=size,
            mtime=info.st_mtime,
            digests={n: d.hexdigest() for n, d in stream.digests.items()},
            scan=scan,
            tail_bytes=tail,
            upload_id=None,
            source=source,
        )
        record.update({key: cached[key] for key in KEPT_KEYS if cached and key in cached})
        if size == info.st_size:
            await asyncio.to_thread(_write_if_unchanged, where, info, record)
        return record, info


def _write_if_unchanged(where: AreaPath, info: os.stat_result, record: dict[str, Any]) -> None:
    """Write the sidecar, unless the file changed since ``info`` (then the record may not
    describe it, and is not cached)."""
    after = os.stat(where.staged)
    if (after.st_size, after.st_mtime_ns) == (info.st_size, info.st_mtime_ns):
        write_sidecar(where.sidecar, where.metadata_home, record)


class _Pass:
    """One streaming pass over a staged file: its digests and scan, and its last bytes."""

    def __init__(self, handle: BinaryIO, stream: StreamState) -> None:
        self.handle = handle
        self.stream = stream
        self.tail = b""

    def feed_block(self) -> int:
        """Read, hash and scan one block (blocking); 0 at the end of the file."""
        block = self.handle.read(READ_BLOCK)
        if block:
            self.stream.feed_all([block])  # hashed, then scanned (text, lines, head) in this thread
            self.tail = keep_tail(self.tail, block)
        return len(block)
