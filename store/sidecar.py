"""The metadata record of a staged file and its JSON sidecar, written atomically."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from .area_files import make_room, mtime_ms, replace_file_contents
from .paths import ensure_dir
from .scanner import NOT_TEXT, TAIL_BYTES, ScanResult, tail_text

if TYPE_CHECKING:
    from .layout import DataLayout


def read_tail(path: Path, size: int) -> bytes:
    start = max(0, size - TAIL_BYTES)
    with open(path, "rb") as handle:
        handle.seek(start)
        return handle.read(size - start)


def keep_tail(tail: bytes, block: bytes) -> bytes:
    """The last TAIL_BYTES of ``tail`` followed by ``block``: the tail kept while a file
    streams past, so it is the tail of the very bytes that were hashed."""
    return (tail + block)[-TAIL_BYTES:] if len(block) < TAIL_BYTES else block[-TAIL_BYTES:]


def metadata_record(
    *,
    user: str,
    relative: PurePosixPath,
    size: int,
    mtime: float,
    digests: dict[str, str],
    scan: ScanResult,
    tail_bytes: bytes,
    upload_id: str | None,
    source: str,
) -> dict[str, Any]:
    """The record served by GET /metadata and stored as the sidecar (see DESIGN.md).

    The KBase staging service's metadata file, key for key and type for type (``source``,
    ``md5``, ``lineCount`` as a string, ``head``, ``tail``), with the listing fields and
    our own (``isText``, ``uploadId``, ``sha256``) beside them: either service reads the
    other's sidecars."""
    text = scan.is_text
    record: dict[str, Any] = {
        "source": source,
        "md5": digests["md5"],
        "lineCount": str(scan.line_count),
        "head": scan.head if text else NOT_TEXT,
        "tail": tail_text(tail_bytes, at_file_start=size <= TAIL_BYTES) if text else NOT_TEXT,
        "name": relative.name,
        "path": f"{user}/{relative}",
        "mtime": mtime_ms(mtime),
        "size": size,
        "isFolder": False,
        "isText": text,
        "uploadId": upload_id,
    }
    if "sha256" in digests:
        record["sha256"] = digests["sha256"]
    return record


def write_json_atomically(path: Path, record: dict[str, Any]) -> None:
    """Temp file + fsync + rename: readers see the old document or the new one, never half.
    For sidecars, and for any small JSON state file that concurrent readers share."""
    ensure_dir(path.parent)
    replace_file_contents(path, json.dumps(record, ensure_ascii=False).encode())


def matches_stat(record: dict[str, Any], info: os.stat_result) -> bool:
    """Whether ``record`` (one of our sidecars) gives the size and mtime that ``info``, the
    file's stat, has: the record then describes the file as it is."""
    return record.get("size") == info.st_size and record.get("mtime") == mtime_ms(info.st_mtime)


def read_json_object(path: Path) -> dict[str, Any] | None:
    """The stored JSON object, or None when missing or unreadable (a sidecar is then
    recomputed)."""
    try:
        with open(path, encoding="utf-8") as handle:
            record = json.load(handle)
    except (FileNotFoundError, NotADirectoryError, ValueError, UnicodeDecodeError):
        return None
    return record if isinstance(record, dict) else None


def write_sidecar(path: Path, metadata_home: Path, record: dict[str, Any]) -> None:
    """Write the sidecar at ``path`` (below the user's ``metadata_home``). The metadata
    tree belongs to the server alone: a stale sidecar standing where a folder is now
    needed (the file became a folder), or a stale folder where the sidecar goes, is
    removed first."""
    if not os.path.isfile(path):
        make_room(metadata_home, path)
    write_json_atomically(path, record)


def remove_sidecar(layout: DataLayout, user: str, relative: PurePosixPath) -> None:
    """Remove the sidecar of ``relative`` if there is one."""
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        os.unlink(layout.sidecar_path(user, relative))
