"""Where an accepted path lies on disk, inside one user's staging area.

The text rules (which names and paths are allowed) are protocol/paths.py's, the one path
policy; :func:`resolve_inside` applies them again to whatever it is given, then walks the
filesystem:

* symlinks that stay inside the user's area are allowed (users may organize their own
  area); a symlink whose target resolves outside it - to ``/etc``, to another user's
  area, or dangling towards outside - is refused;
* the returned path is *not* resolved: it is ``root/relative`` made absolute, so a later
  ``os.replace`` onto it replaces a symlink at the final component instead of writing
  through it.

The check is a point-in-time one: callers re-run it just before acting (the server does
so at creation and again right before the final move), since a symlink may have been
planted in between. For the final move itself, :func:`open_dir_inside` closes the last
gap: it opens the destination's folder, checks where the *opened* folder really is, and
the move then goes through that descriptor (``rename`` relative to it), so a symlink
swapped in after the check cannot redirect it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path, PurePosixPath

from protocol.errors import Conflict
from protocol.paths import area_path, check_name, twin_key

__all__ = [
    "PathInTheWay",
    "UnsafePath",
    "ensure_dir",
    "is_inside",
    "open_dir_inside",
    "refuse_twin",
    "resolve_inside",
    "twin_along",
    "twin_of",
    "user_root",
]


class UnsafePath(ValueError):
    """A path that leads outside the user's area; ``reason`` is one line for a 400."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PathInTheWay(UnsafePath, NotADirectoryError):
    """Something that is not a directory sits where a directory is needed.

    Both an :class:`UnsafePath` (a handler answers 409 with ``reason``) and a
    :class:`NotADirectoryError` (code that only knows ``OSError`` still catches it).
    """


def user_root(base: Path, user: str) -> Path:
    """Return ``base/user``; ``user`` must be one name the path policy accepts."""
    check_name(user, field="user name")
    return Path(base) / user


def is_inside(candidate: str, real_root: str) -> bool:
    """Whether the real path ``candidate`` is ``real_root`` or lies below it (both already
    resolved: the test is on the text, component by component)."""
    return candidate == real_root or candidate.startswith(real_root.rstrip(os.sep) + os.sep)


def resolve_inside(root: Path, relative: str | PurePosixPath, *, must_exist: bool = False) -> Path:
    """Join a client-supplied ``relative`` path onto ``root``, refusing any escape.

    Returns the absolute, *unresolved* path ``root/relative`` (``root`` itself for
    ``""`` or ``"."``). Raises protocol's BadRequest for a path the policy refuses,
    :class:`UnsafePath` for one that leaves ``root`` through a symlink,
    :class:`PathInTheWay` when an existing non-directory sits where a directory component
    is named, and :class:`FileNotFoundError` when ``must_exist`` and nothing is there.
    """
    parts = list(area_path(relative).parts)
    root = Path(root).absolute()
    real_root = os.path.realpath(root)

    # Walk the existing prefix component by component, so the reason names the culprit.
    current = root
    shown: list[str] = []
    for index, component in enumerate(parts):
        current = current / component
        shown.append(component)
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            break  # nothing further exists: nothing further can be a symlink yet
        except NotADirectoryError:
            # Cannot normally happen (the parent was checked below), but a racing
            # writer may have swapped a directory for a file.
            raise PathInTheWay(f"'{'/'.join(shown[:-1])}' is not a folder") from None
        if stat.S_ISLNK(st.st_mode):
            if not is_inside(os.path.realpath(current), real_root):
                raise UnsafePath(f"'{'/'.join(shown)}' is a link that leads outside your area")
            try:
                st = os.stat(current)
            except OSError:
                # Dangling (or looping) but pointing inside: acts like a missing entry;
                # the final realpath check below still applies.
                break
        is_last = index == len(parts) - 1
        if not is_last and not stat.S_ISDIR(st.st_mode):
            raise PathInTheWay(f"'{'/'.join(shown)}' is a file, not a folder")

    target = root.joinpath(*parts)
    # The final word: whatever the walk saw, the resolved target must be inside.
    if not is_inside(os.path.realpath(target), real_root):
        raise UnsafePath("path leads outside your area")
    if must_exist and not os.path.exists(target):
        raise FileNotFoundError(f"'{'/'.join(parts) or '.'}' does not exist")
    return target


def ensure_dir(path: Path, mode: int = 0o755) -> None:
    """Create ``path`` and its missing parents; safe when many callers race.

    Never checks-then-creates: each missing level is made with ``mkdir`` and an "already
    exists" is fine when a directory is there. Iterative, so depth is no limit. ``mode``
    applies to the leaf (minus the umask); parents get the default mode, as with
    ``os.makedirs``. A non-directory in the way raises :class:`PathInTheWay` naming it.
    """
    path = Path(path)
    missing: list[Path] = []
    probe = path
    while True:
        try:
            info = os.stat(probe)
        except (FileNotFoundError, NotADirectoryError):
            missing.append(probe)  # (a file further up is reported when mkdir meets it)
            if probe.parent == probe:
                break
            probe = probe.parent
            continue
        if not stat.S_ISDIR(info.st_mode):
            raise PathInTheWay(
                f"cannot create folder '{path}': '{probe}' exists and is not a folder"
            )
        break
    for level in reversed(missing):
        try:
            os.mkdir(level, mode if level == path else 0o777)
        except FileExistsError:
            if not os.path.isdir(level):
                raise PathInTheWay(
                    f"cannot create folder '{path}': '{level}' exists and is not a folder"
                ) from None
        except NotADirectoryError:
            raise PathInTheWay(
                f"cannot create folder '{path}': '{level.parent}' is not a folder"
            ) from None


def twin_of(folder: Path, name: str) -> str | None:
    """An entry of ``folder`` that looks like ``name`` without being it (the same NFC form,
    other code points), or None. Only non-ASCII names can have such twins, so only they
    cost a look at the folder."""
    if name.isascii():
        return None
    key = twin_key(name)
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name != name and not entry.name.isascii() and twin_key(entry.name) == key:
                    return entry.name
    except (FileNotFoundError, NotADirectoryError):
        return None
    return None


def twin_along(root: Path, relative: PurePosixPath) -> str | None:
    """The first existing entry along ``root/relative`` that is a look-alike twin of the
    component the path names there (see :func:`twin_of`), or None."""
    folder = Path(root)
    for component in relative.parts:
        if os.path.lexists(folder / component):
            folder = folder / component
            continue
        return twin_of(folder, component)
    return None


def refuse_twin(root: Path, relative: PurePosixPath, shown: str) -> None:
    """409 for a new path with a look-alike twin along it (see :func:`twin_along`);
    ``shown`` is the new path as the message names it."""
    twin = twin_along(root, relative)
    if twin is not None:
        raise Conflict(
            f"{twin!r} is already there and looks the same as {shown}: use the name as listed"
        )


def open_dir_inside(root: Path, directory: Path) -> int:
    """Open ``directory`` and return its descriptor, if what was opened lies inside ``root``.

    The check is on the opened folder itself (its path as the kernel knows it), not on a
    path that could change after the check: calls relative to the descriptor
    (``dir_fd=``) stay in that folder whatever symlinks appear later. Raises
    :class:`UnsafePath` when the folder is outside ``root``'s real path.
    """
    real_root = os.path.realpath(root)
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            opened = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # no /proc: compare the opened folder with what its path names now
            opened = os.path.realpath(directory)
            if not os.path.samestat(os.fstat(fd), os.stat(opened)):
                raise UnsafePath("path changed while it was being opened") from None
        if not is_inside(opened, real_root):
            raise UnsafePath("path leads outside your area")
    except BaseException:
        os.close(fd)
        raise
    return fd
