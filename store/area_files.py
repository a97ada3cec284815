"""File operations inside a user's staging area: entries, no-replace moves, tree removal.

All calls block; the service runs them in worker threads. Other requests, finalizes and
people on the shell may add or remove entries at any moment: every operation here takes
an entry that vanishes or appears under it in its stride, or says clearly that it could
not finish (``TreeChanged``), never with a stray ``OSError``.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .paths import is_inside

_AT_FDCWD = -100
_RENAME_NOREPLACE = 1
_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
# A folder that keeps filling up while it is being removed is given up on after this many
# rescans: the caller answers 409 rather than loop for as long as a writer keeps writing.
REMOVE_RESCANS = 5


class TreeChanged(OSError):
    """A tree changed under an operation in a way it cannot complete (moved away, or
    kept refilling); nothing outside the tree was touched."""


class MoveIntoItself(ValueError):
    """A folder cannot be moved into itself or into its own subtree."""


def mtime_ms(st_mtime: float) -> int:
    """A file's mtime (seconds) in whole milliseconds, as listings and sidecars give it;
    sidecars are judged fresh by comparing it, so every writer and reader uses this one."""
    return int(st_mtime * 1000)


def entry(path: Path, user_root: Path, info: os.stat_result | None = None) -> dict[str, Any]:
    """The listing record of one file or folder: name, path, mtime (ms), size, isFolder."""
    info = info or os.stat(path)
    relative = path.relative_to(user_root)
    return {
        "name": path.name if str(relative) != "." else user_root.name,
        "path": f"{user_root.name}/{relative}" if str(relative) != "." else user_root.name,
        "mtime": mtime_ms(info.st_mtime),
        "size": info.st_size,
        "isFolder": stat.S_ISDIR(info.st_mode),
    }


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
    try:
        os.rename(source, target)
    except OSError as error:
        if error.errno == errno.EINVAL:
            raise MoveIntoItself(f"cannot move {source} into itself") from None
        raise


def _is_own_subtree(source: Path, target: Path) -> bool:
    """Whether ``target`` lies in the folder ``source`` (a link is not its target's folder)."""
    if not stat.S_ISDIR(os.lstat(source).st_mode):
        return False
    return is_inside(os.path.realpath(target.parent), os.path.realpath(source))


def move_entry(source: Path, target: Path) -> None:
    """Move a file, link or folder to ``target``, whose folder must exist; never replaces.

    FileNotFoundError: nothing at ``source``. NotADirectoryError: ``target``'s folder is
    missing (or not a folder). FileExistsError: something is at ``target``.
    MoveIntoItself: ``target`` is inside the folder ``source``, whatever links lead there.
    """
    if not os.path.lexists(source):
        raise FileNotFoundError(errno.ENOENT, "nothing to move", str(source))
    if not os.path.isdir(target.parent):
        raise NotADirectoryError(errno.ENOTDIR, "no such folder", str(target.parent))
    if _is_own_subtree(source, target):
        raise MoveIntoItself(f"cannot move {source} into itself")
    try:
        move_no_replace(source, target)
    except FileNotFoundError:  # one of them vanished meanwhile: say which
        if not os.path.lexists(source):
            raise
        raise NotADirectoryError(errno.ENOTDIR, "no such folder", str(target.parent)) from None


def move_sidecar(source: Path, target: Path, root: Path) -> None:
    """Move the sidecar (file or folder of sidecars) of a moved entry to ``target``.

    Sidecars are a cache: whatever stands in the way below ``root`` (a stale sidecar at
    ``target``, a stale sidecar file where a folder is needed) is removed; if the move
    still cannot be made (something keeps appearing there), the source sidecar is dropped
    rather than left behind, and the metadata is recomputed when asked for.
    """
    for _ in range(REMOVE_RESCANS):
        if not os.path.lexists(source):
            return
        make_room(root, target)
        try:
            os.rename(source, target)
            return
        except OSError as error:
            if error.errno not in (errno.ENOENT, errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):
                raise
    remove_path(source)


def make_room(root: Path, path: Path) -> None:
    """Clear the place of a sidecar (or folder of sidecars) below ``root``: its folders
    exist afterwards and nothing is at ``path``. What stood in the way was stale: sidecars
    are a cache of what the staged files say."""
    os.makedirs(root, exist_ok=True)
    _clear_way(root, path.parent)
    remove_path(path)


def _clear_way(root: Path, folder: Path) -> None:
    """Make ``folder`` (below ``root``) a folder, one level at a time (any depth), removing
    a stale sidecar file where a folder of sidecars belongs."""
    current = root
    for part in folder.relative_to(root).parts:
        current = current / part
        try:
            os.mkdir(current)
        except FileExistsError:
            with contextlib.suppress(FileNotFoundError, FileExistsError):
                if not stat.S_ISDIR(os.lstat(current).st_mode):
                    os.unlink(current)
                    os.mkdir(current)


def replace_file_contents(path: Path, data: bytes) -> None:
    """Write ``path`` whole through a temp file and a rename: readers never see it half
    written, and a link at ``path`` is replaced, not written through."""
    handle, temp = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise


def remove_path(path: Path) -> bool:
    """Delete a file, link or folder tree; False if nothing was there."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return False
    if stat.S_ISDIR(info.st_mode):
        parent = os.open(path.parent, _OPEN_DIR)
        try:
            _remove_tree_at(parent, path.name)
        finally:
            os.close(parent)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    return True


@dataclass
class _Level:
    """One folder on the way down: its name in its parent, its identity, and the
    subfolders not yet removed."""

    name: str
    identity: tuple[int, int]
    subfolders: list[str] = field(default_factory=list)
    rescans: int = 0


def _identity(fd: int) -> tuple[int, int]:
    info = os.fstat(fd)
    return info.st_dev, info.st_ino


def _open_folder(parent: int, name: str) -> int | None:
    """The folder ``name`` in ``parent``, opened without following a link; None when it is
    gone, or is no folder any more (then it is unlinked as what it now is)."""
    try:
        return os.open(name, _OPEN_DIR | os.O_NOFOLLOW, dir_fd=parent)
    except FileNotFoundError:
        return None
    except OSError as error:
        if error.errno not in (errno.ENOTDIR, errno.ELOOP):
            raise
    with contextlib.suppress(FileNotFoundError):
        os.unlink(name, dir_fd=parent)
    return None


def _unlink_files(fd: int) -> list[str]:
    """Unlink every non-folder in the open folder ``fd``; its subfolders' names."""
    subfolders = []
    with os.scandir(fd) as scan:
        for item in scan:
            if item.is_dir(follow_symlinks=False):
                subfolders.append(item.name)
                continue
            try:
                os.unlink(item.name, dir_fd=fd)
            except FileNotFoundError:
                pass
            except IsADirectoryError:  # became a folder since the scan
                subfolders.append(item.name)
    return subfolders


def _climb(fd: int, expected: tuple[int, int]) -> int:
    """The parent of the open folder ``fd``, if it is still the folder we came down from."""
    parent = os.open("..", _OPEN_DIR, dir_fd=fd)
    if _identity(parent) != expected:
        os.close(parent)
        raise TreeChanged(errno.ESTALE, "folder moved away while it was being removed")
    return parent


def _remove_tree_at(top_parent: int, top_name: str) -> None:
    """Remove the folder ``top_name`` of ``top_parent`` and everything in it.

    Iterative, so any depth works; never follows a link (a link is unlinked, not what it
    points to); holds two descriptors at most, climbing back through ``..`` checked
    against the identity seen on the way down, so a folder moved away meanwhile is
    noticed (TreeChanged) instead of removing whatever is now its parent's neighbour.
    """
    fd = _open_folder(top_parent, top_name)
    if fd is None:
        return
    try:
        levels = [_Level(top_name, _identity(fd), _unlink_files(fd))]
        while levels:
            level = levels[-1]
            if level.subfolders:
                name = level.subfolders.pop()
                child = _open_folder(fd, name)
                if child is not None:
                    os.close(fd)
                    fd = child
                    levels.append(_Level(name, _identity(fd), _unlink_files(fd)))
                continue
            # Empty as far as we know: climb to the parent and remove it from there.
            levels.pop()
            parent = _climb(fd, levels[-1].identity) if levels else top_parent
            os.close(fd)
            fd = parent
            try:
                os.rmdir(level.name, dir_fd=fd)
            except FileNotFoundError:
                pass
            except OSError as error:
                if error.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
                # Entries appeared since the scan: go down again, a few times at most.
                if level.rescans >= REMOVE_RESCANS:
                    raise TreeChanged(
                        errno.ENOTEMPTY, "folder kept filling up", level.name
                    ) from None
                again = _open_folder(fd, level.name)
                if again is not None:
                    if fd != top_parent:
                        os.close(fd)
                    fd = again
                    level.identity = _identity(fd)
                    level.subfolders = _unlink_files(fd)
                    level.rescans += 1
                    levels.append(level)
    finally:
        if fd != top_parent:
            os.close(fd)
