"""The metadata record of a staged file and its JSON sidecar, written atomically."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from .area_files import remove_path
from .paths import ensure_dir, user_root
from .scanner import NOT_TEXT, TAIL_BYTES, ScanResult, tail_text

if TYPE_CHECKING:
    from .layout import DataLayout


def read_tail(path: Path, size: int) -> bytes:
    start = max(0, size - TAIL_BYTES)
    with open(path, "rb") as handle:
        handle.seek(start)
        return handle.read(size - start)


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
    """The record served by GET /metadata and stored as the sidecar (see DESIGN.md)."""
    text = scan.is_text
    record: dict[str, Any] = {
        "name": relative.name,
        "path": f"{user}/{relative}",
        "mtime": int(mtime * 1000),
        "size": size,
        "isFolder": False,
        "md5": digests["md5"],
        "lineCount": scan.line_count,
        "isText": text,
        "head": scan.head if text else NOT_TEXT,
        "tail": tail_text(tail_bytes, at_file_start=size <= TAIL_BYTES) if text else NOT_TEXT,
        "source": source,
        "uploadId": upload_id,
    }
    if "sha256" in digests:
        record["sha256"] = digests["sha256"]
    return record


def temp_name() -> str:
    """A name for a file in the making, beside its final one: short enough whatever the
    final name's length (NAME_MAX), and never one a client can choose."""
    return f".tus-staging-{secrets.token_hex(8)}.tmp"


def write_json_atomically(path: Path, record: dict[str, Any]) -> None:
    """Temp file + fsync + rename: readers see the old document or the new one, never half.
    For sidecars, and for any small JSON state file that concurrent readers share."""
    ensure_dir(path.parent)
    temp = path.with_name(temp_name())
    try:
        with open(temp, "w", encoding="utf-8") as handle:
            json.dump(record, handle, ensure_ascii=False)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise


def read_json_object(path: Path) -> dict[str, Any] | None:
    """The stored JSON object, or None when missing or unreadable (a sidecar is then
    recomputed)."""
    try:
        with open(path, encoding="utf-8") as handle:
            record = json.load(handle)
    except (FileNotFoundError, NotADirectoryError, ValueError, UnicodeDecodeError):
        return None
    return record if isinstance(record, dict) else None


def write_sidecar(
    layout: DataLayout, user: str, relative: PurePosixPath, record: dict[str, Any]
) -> None:
    """Write the sidecar of ``relative``. The metadata tree belongs to the server alone:
    a stale sidecar standing where a folder is now needed (the file became a folder), or
    a stale folder where the sidecar goes, is removed first."""
    path = layout.sidecar_path(user, relative)
    root = user_root(layout.metadata_dir, user)
    for ancestor in reversed(path.relative_to(root).parents):
        level = root / ancestor
        if level != root and os.path.lexists(level) and not os.path.isdir(level):
            remove_path(level)
    if os.path.isdir(path) and not os.path.islink(path):
        remove_path(path)
    write_json_atomically(path, record)


def remove_sidecar(layout: DataLayout, user: str, relative: PurePosixPath) -> None:
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        os.unlink(layout.sidecar_path(user, relative))
