"""A finished upload's staged file, opened for reading: the file the upload placed, or none.

Between an upload's end and a request for its bytes, its owner may have moved or deleted
the file, or a later upload of the same name may have replaced it. So the file is opened
first (through a descriptor of its folder checked to be inside the owner's area, never
following a link at the name), and only then is its sidecar read: the sidecar must name
this upload and describe the opened file (size and mtime). What was opened is what is
served, whatever the path names afterwards.
"""

from __future__ import annotations

import contextlib
import os
import stat
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from protocol.errors import TusError

from .layout import DataLayout
from .paths import UnsafePath, open_dir_inside
from .record import UploadRecord
from .sidecar import matches_stat, read_json_object

OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


@dataclass
class StagedFile:
    """An open descriptor of a staged file; whoever holds it closes it."""

    fd: int
    name: str
    size: int

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


def _describes(sidecar: dict[str, Any] | None, upload_id: str, info: os.stat_result) -> bool:
    return (
        sidecar is not None and sidecar.get("uploadId") == upload_id and matches_stat(sidecar, info)
    )


def open_staged(record: UploadRecord, layout: DataLayout) -> StagedFile | None:
    """The file ``record`` staged, opened, if it is still that file; None otherwise.
    Blocking."""
    relative = PurePosixPath(record.destination)
    try:
        path = layout.staged_path(record.owner, relative)
        sidecar_path = layout.sidecar_path(record.owner, relative)
        folder = open_dir_inside(layout.user_home(record.owner), path.parent)
    except (OSError, UnsafePath, TusError):
        return None  # a folder on the way is gone, or became a link out of the area
    try:
        fd = os.open(path.name, OPEN_FLAGS, dir_fd=folder)
    except OSError:
        return None
    finally:
        os.close(folder)
    staged = StagedFile(fd, path.name, 0)
    try:
        info = os.fstat(fd)
        if stat.S_ISREG(info.st_mode) and _describes(
            read_json_object(sidecar_path), record.id, info
        ):
            staged.size = info.st_size
            return staged
    except BaseException:
        staged.close()
        raise
    staged.close()
    return None
