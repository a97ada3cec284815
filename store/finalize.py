"""Finalize: move a fully committed upload into the user's staging area.

partial → finalizing(destination, metadata) → complete. Each step is idempotent so
that whoever comes next (a HEAD, a PATCH, the janitor) completes a finalize that a
crash interrupted, without moving anything twice:

* the metadata record is computed from the stream state *before* the move and stored
  in Redis with the "finalizing" status, so nothing has to be read again;
* the partial file's identity (device, inode) is stored too: after a crash, a staged
  file with that identity is ours, one without it was replaced by a later upload;
* finalizes that target the same destination are serialized by a Redis lock on the
  destination, so one upload's data move and sidecar write never interleave with
  another's.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import json
import os
import shutil
import stat
import time
from pathlib import Path, PurePosixPath
from typing import Any

from redis.asyncio import Redis

from protocol.errors import Conflict

from .crash_points import crash_point
from .layout import DataLayout
from .locks import LockSettings, UploadLock, acquire_lock, keep_renewed
from .partial import StreamState, file_identity, partial_path, stat_identity
from .paths import ensure_dir, open_dir_inside
from .record import FINALIZING_INDEX_KEY, UploadRecord, UploadStatus
from .sidecar import metadata_record, read_tail, write_json_atomically
from .state_store import StateStore

SOURCE = "tus upload"


def destination_lock_name(user: str, destination: str) -> str:
    digest = hashlib.sha256(f"{user}\0{destination}".encode()).hexdigest()[:32]
    return f"dest-{digest}"


def prepare_result(record: UploadRecord, layout: DataLayout, stream: StreamState) -> bytes:
    """The metadata record (without mtime, known only after the move). Blocking."""
    size = record.offset
    scan = stream.scanner.finish()
    partial = partial_path(layout.upload_dir, record.id)
    tail = read_tail(partial, size) if scan.is_text else b""
    result = metadata_record(
        user=record.owner,
        relative=PurePosixPath(record.destination),
        size=size,
        mtime=0.0,
        digests={name: digest.hexdigest() for name, digest in stream.digests.items()},
        scan=scan,
        tail_bytes=tail,
        upload_id=record.id,
        source=SOURCE,
    )
    return json.dumps(result, ensure_ascii=False).encode()


def _copy_across_filesystems(source: Path, folder: int, name: str, upload_id: str) -> None:
    # The temp file sits in the destination folder, so the last step is a same-fs rename.
    temp = f".{upload_id}.tus-staging.tmp"
    out_fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644, dir_fd=folder)
    with open(source, "rb") as src, open(out_fd, "wb") as out:
        shutil.copyfileobj(src, out, 4 * 1024 * 1024)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temp, name, src_dir_fd=folder, dst_dir_fd=folder)


def place_file(record: UploadRecord, layout: DataLayout) -> None:
    """Move the partial file to its staging path and write its sidecar. Blocking, idempotent."""
    relative = PurePosixPath(record.destination)
    dest = layout.staged_path(record.owner, relative)  # re-checked: symlinks may be new
    sidecar = layout.sidecar_path(record.owner, relative)
    partial = partial_path(layout.upload_dir, record.id)
    ensure_dir(dest.parent)
    # Everything below goes through the folder's descriptor, checked to be inside the
    # user's area: a symlink planted after the check above cannot redirect the move.
    folder = open_dir_inside(layout.user_home(record.owner), dest.parent)
    try:
        if _is_dir_at(folder, dest.name):
            raise Conflict(f"destination {record.destination!r} is a directory")
        copied = False
        if partial.exists():
            try:
                os.replace(partial, dest.name, dst_dir_fd=folder)
            except OSError as error:
                if error.errno != errno.EXDEV:
                    raise
                _copy_across_filesystems(partial, folder, dest.name, record.id)
                copied = True
            os.fsync(folder)
            crash_point("finalize-after-move")
            ours = True
        else:
            # A crash came after the move: the staged file is ours only if still the same
            # inode.
            ours = _identity_at(folder, dest.name) == record.partial_identity
        if ours:
            info = os.stat(dest.name, dir_fd=folder, follow_symlinks=False)
            result: dict[str, Any] = json.loads(record.result)
            result["mtime"] = int(info.st_mtime * 1000)
            write_json_atomically(sidecar, result)
    finally:
        os.close(folder)
    if copied:
        partial.unlink()  # only now: until the sidecar is written, a retry copies again


def _is_dir_at(folder: int, name: str) -> bool:
    try:
        return stat.S_ISDIR(os.stat(name, dir_fd=folder).st_mode)
    except FileNotFoundError:
        return False


def _identity_at(folder: int, name: str) -> str | None:
    try:
        info = os.stat(name, dir_fd=folder, follow_symlinks=False)
    except FileNotFoundError:
        return None
    return stat_identity(info)


async def finalize(
    redis: Redis,
    store: StateStore,
    lock: UploadLock,
    record: UploadRecord,
    layout: DataLayout,
    stream: StreamState | None,
    lock_settings: LockSettings,
) -> UploadRecord:
    """Drive ``record`` (full, locked by ``lock``) to COMPLETE. Safe to call again after a crash."""
    if record.status is UploadStatus.COMPLETE:
        return record
    if record.status is UploadStatus.PARTIAL:
        if stream is None:
            raise ValueError("a partial upload needs its stream state to finalize")
        record.result = await asyncio.to_thread(prepare_result, record, layout, stream)
        record.partial_identity = await asyncio.to_thread(
            file_identity, partial_path(layout.upload_dir, record.id)
        )
        record.status = UploadStatus.FINALIZING
        await store.update(
            lock,
            {
                "status": record.status.value.encode(),
                "result": record.result,
                "partial_identity": record.partial_identity.encode(),
            },
            expect_offset=record.offset,
        )
        await redis.zadd(FINALIZING_INDEX_KEY, {record.id: time.time()})
        crash_point("finalize-before-move")
    dest_lock = await acquire_lock(
        redis, destination_lock_name(record.owner, record.destination), lock_settings
    )
    try:
        # A move across filesystems copies the whole file: keep both locks alive meanwhile.
        async with keep_renewed(lock, dest_lock):
            await asyncio.to_thread(place_file, record, layout)
    finally:
        await dest_lock.release()
    crash_point("finalize-before-complete")
    record.status = UploadStatus.COMPLETE
    await store.update(lock, {"status": record.status.value.encode()})
    await store.set_expiry(record.id, None)
    await redis.zrem(FINALIZING_INDEX_KEY, record.id)
    return record
