"""File operations inside a user's staging area: entries, listing, no-replace moves, deletes.

All calls block; the service runs them in worker threads.
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import stat
from pathlib import Path
from typing import Any

_AT_FDCWD = -100
_RENAME_NOREPLACE = 1


def entry(path: Path, user_root: Path, info: os.stat_result | None = None) -> dict[str, Any]:
    """The listing record of one file or folder: name, path, mtime (ms), size, isFolder."""
    info = info or os.stat(path)
    relative = path.relative_to(user_root)
    return {
        "name": path.name if str(relative) != "." else user_root.name,
        "path": f"{user_root.name}/{relative}" if str(relative) != "." else user_root.name,
        "mtime": int(info.st_mtime * 1000),
        "size": info.st_size,
        "isFolder": stat.S_ISDIR(info.st_mode),
    }


def list_directory(directory: Path, user_root: Path, show_hidden: bool) -> list[dict[str, Any]]:
    """Entries of ``directory`` (not recursive, as the KBase staging service does).

    Symlinks are listed by what they point to, and left out when that is outside the area.
    """
    real_root = os.path.realpath(user_root)
    entries = []
    with os.scandir(directory) as scan:
        for item in scan:
            if not show_hidden and item.name.startswith("."):
                continue
            if item.is_symlink():
                target = os.path.realpath(item.path)
                if os.path.commonpath([real_root, target]) != real_root:
                    continue
            try:
                entries.append(entry(Path(item.path), user_root, item.stat()))
            except FileNotFoundError:
                continue  # removed while listing, or a dangling link
    entries.sort(key=lambda e: (not e["isFolder"], e["name"]))
    return entries


def _renameat2() -> Any:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        function = libc.renameat2
    except (OSError, AttributeError):
        return None
    function.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint,
    ]
    return function


_RENAMEAT2 = _renameat2()


def move_no_replace(source: Path, target: Path) -> None:
    """Rename, failing with FileExistsError if ``target`` exists — atomically where the
    kernel supports RENAME_NOREPLACE (no window for a concurrent writer of ``target``)."""
    if _RENAMEAT2 is not None:
        result = _RENAMEAT2(
            _AT_FDCWD, os.fsencode(source), _AT_FDCWD, os.fsencode(target), _RENAME_NOREPLACE
        )
        if result == 0:
            return
        code = ctypes.get_errno()
        if code not in (errno.ENOSYS, errno.EINVAL):
            raise OSError(code, os.strerror(code), str(source), None, str(target))
    # Fallback for filesystems without RENAME_NOREPLACE: check, then rename.
    if os.path.lexists(target):
        raise FileExistsError(errno.EEXIST, "target exists", str(target))
    os.rename(source, target)


def remove_path(path: Path) -> bool:
    """Delete a file, link or directory tree; False if nothing was there."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return False
    if stat.S_ISDIR(info.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)
    return True
