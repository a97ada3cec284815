"""Safe path resolution inside one user's staging area.

Every path a client names (``filename``, ``destPath``, Uppy's ``relativePath``, the
staging API's ``{path}``) goes through :func:`resolve_inside` before anything is
created, read, moved or deleted.

Policy:

* Lexical rules first, on the text alone: no absolute paths, no ``..`` components
  (even ones that would stay inside), no backslashes, no NUL or other control
  characters, no lone surrogates (the text must encode as UTF-8), no component over
  255 bytes, and no component that Unicode NFKC folding would turn into a separator
  or a dot-dot (``U+FF0F``, ``U+2025``...), nor slash lookalikes (``U+2215``):
  harmless on a POSIX filesystem, but a trap for any tool downstream that
  normalizes names, and a way to spoof a path in listings.
  No percent-decoding happens here: ``%2e%2e`` is a literal (odd) file name.
* Then the filesystem: symlinks that stay inside the user's area are allowed (users
  may organize their own area); a symlink whose target resolves outside it - to
  ``/etc``, to another user's area, or dangling towards outside - is refused.
* The returned path is *not* resolved: it is ``root/relative`` made absolute, so a
  later ``os.replace`` onto it replaces a symlink at the final component instead of
  writing through it.

The check is a point-in-time one: callers re-run it just before acting (the server
does so at POST and again right before the final move), since a symlink may have been
planted in between. For the final move itself, :func:`open_dir_inside` closes the last
gap: it opens the destination's folder, checks where the *opened* folder really is, and
the move then goes through that descriptor (``rename`` relative to it), so a symlink
swapped in after the check cannot redirect it.
"""

from __future__ import annotations

import os
import stat
import unicodedata
from pathlib import Path, PurePosixPath

__all__ = [
    "NAME_MAX",
    "PATH_MAX",
    "PathInTheWay",
    "UnsafePath",
    "ensure_dir",
    "open_dir_inside",
    "resolve_inside",
    "user_root",
]

# Linux limits; checked up front so that clients get a clear reason, not ENAMETOOLONG.
NAME_MAX = 255
PATH_MAX = 4096

# Characters that NFKC folds into something meaningful to a path parser.
_DANGEROUS_AFTER_NFKC = ("/", "\\", "\x00")
# Slash lookalikes that NFKC leaves alone (U+2215 has no compatibility mapping): plain
# characters on disk, but a name showing "a∕b" would pass for a path in listings.
_LOOKALIKE_SEPARATORS = frozenset("\u2044\u2215\u29f8\u29f9\uff0f\uff3c\ufe68")


class UnsafePath(ValueError):
    """A client-supplied path that must not be used; ``reason`` is one line for a 400."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PathInTheWay(UnsafePath, NotADirectoryError):
    """Something that is not a directory sits where a directory is needed.

    Both an :class:`UnsafePath` (a handler answers 400 with ``reason``) and a
    :class:`NotADirectoryError` (code that only knows ``OSError`` still catches it).
    """


def _check_component(component: str, what: str) -> None:
    """Raise UnsafePath unless ``component`` is a plain, single path component."""
    if component in (".", ".."):
        raise UnsafePath(f"{what} may not be {component!r}")
    if "/" in component:
        raise UnsafePath(f"{what} may not contain '/'")
    if "\\" in component:
        raise UnsafePath(f"{what} may not contain a backslash")
    for ch in component:
        # Cc covers NUL, the C0 controls, DEL and the C1 controls.
        if unicodedata.category(ch) == "Cc":
            raise UnsafePath(f"{what} contains the control character U+{ord(ch):04X}")
    try:
        encoded = component.encode("utf-8")
    except UnicodeEncodeError:
        raise UnsafePath(f"{what} is not valid UTF-8") from None
    if len(encoded) > NAME_MAX:
        raise UnsafePath(f"{what} is longer than {NAME_MAX} bytes")
    lookalike = next((ch for ch in component if ch in _LOOKALIKE_SEPARATORS), None)
    if lookalike is not None:
        raise UnsafePath(f"{what} contains U+{ord(lookalike):04X}, which looks like a slash")
    folded = unicodedata.normalize("NFKC", component)
    if folded != component and (
        folded in (".", "..") or any(c in folded for c in _DANGEROUS_AFTER_NFKC)
    ):
        raise UnsafePath(f"{what} {component!r} reads as {folded!r} after Unicode normalization")


def user_root(base: Path, user: str) -> Path:
    """Return ``base/user``; ``user`` must be one safe, non-empty path component."""
    if not isinstance(user, str) or not user:
        raise UnsafePath("user name is empty")
    _check_component(user, "user name")
    return Path(base) / user


def _split_relative(relative: str | PurePosixPath) -> list[str]:
    """Apply the lexical rules and return the components (``.`` and empties dropped)."""
    text = relative.as_posix() if isinstance(relative, PurePosixPath) else relative
    if not isinstance(text, str):
        raise UnsafePath("path must be text")
    if text.startswith("/"):
        raise UnsafePath("path must be relative, not absolute")
    if "\\" in text:
        # Rejected rather than treated as a separator: it has no single safe meaning.
        raise UnsafePath("path may not contain a backslash")
    if len(text.encode("utf-8", "surrogatepass")) > PATH_MAX:
        raise UnsafePath(f"path is longer than {PATH_MAX} bytes")
    parts: list[str] = []
    for component in text.split("/"):
        if component in ("", "."):
            continue  # "a//b", "./a" and "a/" are harmless spellings of the same path
        if component == "..":
            raise UnsafePath("path may not contain '..'")
        _check_component(component, "path component")
        parts.append(component)
    return parts


def _is_inside(candidate: str, real_root: str) -> bool:
    return candidate == real_root or candidate.startswith(real_root.rstrip(os.sep) + os.sep)


def resolve_inside(root: Path, relative: str | PurePosixPath, *, must_exist: bool = False) -> Path:
    """Join a client-supplied ``relative`` path onto ``root``, refusing any escape.

    Returns the absolute, *unresolved* path ``root/relative`` (``root`` itself for
    ``""`` or ``"."``). Raises :class:`UnsafePath` for a path that breaks the lexical
    rules or leaves ``root`` through a symlink, :class:`PathInTheWay` when an existing
    non-directory sits where a directory component is named, and
    :class:`FileNotFoundError` when ``must_exist`` and nothing is there.
    """
    parts = _split_relative(relative)
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
            if not _is_inside(os.path.realpath(current), real_root):
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
    if not _is_inside(os.path.realpath(target), real_root):
        raise UnsafePath("path leads outside your area")
    if must_exist and not os.path.exists(target):
        raise FileNotFoundError(f"'{'/'.join(parts) or '.'}' does not exist")
    return target


def _first_non_directory(path: Path) -> Path | None:
    """The nearest existing ancestor-or-self of ``path`` that is not a directory."""
    for candidate in (path, *path.parents):
        if os.path.lexists(candidate):
            return None if os.path.isdir(candidate) else candidate
    return None


def ensure_dir(path: Path, mode: int = 0o755) -> None:
    """Create ``path`` and its parents if missing; safe when many callers race.

    Never checks-then-creates: ``os.makedirs(exist_ok=True)`` tolerates a concurrent
    creator at every level. ``mode`` applies to the leaf (minus the umask); parents
    get the default mode, as with ``os.makedirs``. A non-directory in the way raises
    :class:`PathInTheWay` naming it.
    """
    path = Path(path)
    try:
        os.makedirs(path, mode=mode, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:
        blocker = _first_non_directory(path)
        if blocker is None:
            raise  # the obstacle vanished meanwhile; report the OS's own error
        raise PathInTheWay(
            f"cannot create folder '{path}': '{blocker}' exists and is not a folder"
        ) from exc


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
        if not _is_inside(opened, real_root):
            raise UnsafePath("path leads outside your area")
    except BaseException:
        os.close(fd)
        raise
    return fd
