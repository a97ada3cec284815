"""Placing a fully committed upload into the user's staging area (the blocking steps).

The session (store/session.py) drives partial → finalizing → complete; this module does
the file work, each step idempotent so that whoever comes next (a HEAD, a PATCH, the
janitor) completes a finalize that a crash interrupted, without moving anything twice:

* the metadata record is computed from the stream state *before* the move and stored
  in Redis with the "finalizing" status, so nothing has to be read again;
* the partial file's identity (device, inode) is stored too: after a crash, a staged
  file with that identity is ours, one without it was replaced by a later upload;
* the move goes through a descriptor of the destination folder, checked to be inside
  the user's area, so a symlink planted after the path check cannot redirect it;
* a folder removed or moved away by the user at the same moment is made again (the
  move is retried), and a sidecar whose file did not stay where it was placed is taken
  back: no orphan sidecar is left behind.

Anything that keeps the file from its destination (a folder where the file should go, a
file where a folder should be, a name that now looks like another's) is a
:class:`FinalizeBlocked`: the upload stays finalizing, each later request says why
(409), and DELETE still removes it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import shutil
import stat
from pathlib import Path, PurePosixPath
from typing import Any

from protocol.errors import Conflict, TusError

from .area_files import mtime_ms
from .crash_points import crash_point
from .layout import DataLayout
from .partial import READ_BLOCK, StreamState, partial_path, stat_identity
from .paths import UnsafePath, ensure_dir, open_dir_inside, twin_of
from .record import UploadRecord
from .sidecar import metadata_record, read_tail, remove_sidecar, write_sidecar

# Times a move is tried again when its folder vanished under it (removed or moved away
# by the user at that very moment).
PLACE_ATTEMPTS = 3


class FinalizeBlocked(Conflict):
    """Something on disk keeps the upload from its destination; retried on each request."""


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
        source=record.source,
    )
    return json.dumps(result, ensure_ascii=False).encode()


def temp_name() -> str:
    """A name for a file in the making beside its final one: short enough whatever the
    final name's length (NAME_MAX), and never one a client can choose."""
    return f".tus-staging-{secrets.token_hex(8)}.tmp"


def _copy_across_filesystems(source: Path, folder: int, name: str) -> None:
    # The temp file sits in the destination folder, so the last step is a same-fs rename.
    temp = temp_name()
    out_fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644, dir_fd=folder)
    try:
        with open(source, "rb") as src, open(out_fd, "wb") as out:
            shutil.copyfileobj(src, out, READ_BLOCK)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, name, src_dir_fd=folder, dst_dir_fd=folder)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp, dir_fd=folder)
        raise


def place_file(record: UploadRecord, layout: DataLayout) -> int | None:
    """Move the partial file to its staging path and write its sidecar. Blocking,
    idempotent; raises FinalizeBlocked when something on disk is in the way. Returns the
    staged file's mtime (ms) as the sidecar has it, or None when no file of ours is there
    (a finalize resumed after the file was moved away or replaced)."""
    for attempt in range(PLACE_ATTEMPTS):
        try:
            return _place_once(record, layout)
        except FileNotFoundError:
            # The folder was removed (or moved) between our steps: make it again.
            if attempt == PLACE_ATTEMPTS - 1:
                raise FinalizeBlocked(
                    f"cannot stage upload {record.id}: its folder keeps vanishing"
                ) from None
        except (UnsafePath, TusError) as error:
            reason = error.reason
            raise FinalizeBlocked(
                f"cannot stage upload {record.id} at {record.destination!r}: {reason}; "
                "remove what is in the way, or DELETE the upload"
            ) from None


def _place_once(record: UploadRecord, layout: DataLayout) -> int | None:
    relative = PurePosixPath(record.destination)
    dest = layout.staged_path(record.owner, relative)  # re-checked: symlinks may be new
    partial = partial_path(layout.upload_dir, record.id)
    ensure_dir(dest.parent)
    folder = open_dir_inside(layout.user_home(record.owner), dest.parent)
    try:
        twin = twin_of(dest.parent, dest.name)
        if twin is not None:
            raise Conflict(f"{twin!r} looks the same and is already there")
        if _is_dir_at(folder, dest.name):
            raise Conflict(f"{record.destination!r} is a folder")
        copied = False
        if os.path.exists(partial):
            try:
                os.replace(partial, dest.name, dst_dir_fd=folder)
            except OSError as error:
                if error.errno != errno.EXDEV:
                    raise
                _copy_across_filesystems(partial, folder, dest.name)
                copied = True
            os.fsync(folder)
            crash_point("finalize-after-move")
        # After a crash the staged file is ours only if it still is the same inode.
        info = _stat_at(folder, dest.name)
        mtime = None
        if info is not None and (copied or stat_identity(info) == record.partial_identity):
            mtime = _write_result(record, layout, relative, info)
            if _stat_at(folder, dest.name) is None:
                # Removed or moved away by the user meanwhile: no sidecar for a file that
                # is not there (a moved one gets its metadata again on demand).
                remove_sidecar(layout, record.owner, relative)
    finally:
        os.close(folder)
    if copied:
        partial.unlink()  # only now: until the sidecar is written, a retry copies again
    return mtime


def _write_result(
    record: UploadRecord, layout: DataLayout, relative: PurePosixPath, info: os.stat_result
) -> int:
    mtime = mtime_ms(info.st_mtime)
    write_sidecar(
        layout.sidecar_path(record.owner, relative),
        layout.metadata_home(record.owner),
        result_with_mtime(record.result, mtime),
    )
    return mtime


def result_with_mtime(result: bytes, mtime: int) -> dict[str, Any]:
    """The metadata record ``result`` (JSON) with the staged file's mtime (ms) filled in."""
    record: dict[str, Any] = json.loads(result)
    record["mtime"] = mtime
    return record


def _is_dir_at(folder: int, name: str) -> bool:
    try:
        return stat.S_ISDIR(os.stat(name, dir_fd=folder).st_mode)
    except FileNotFoundError:
        return False


def _stat_at(folder: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=folder, follow_symlinks=False)
    except FileNotFoundError:
        return None
