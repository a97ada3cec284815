"""The one path policy: which names and paths a client may use inside a user's area.

Every route that names a path in a user's area goes through here, for reading and for
creating alike: tus and IETF creation (``filename``, ``destPath``, Uppy's
``relativePath``), ``/mkdir``, ``/mv``, ``/delete``, ``/download``, ``/metadata``,
``/list``, ``/upload`` and every later route. So a name gets the same verdict wherever
it is used. Only text is checked here; store/paths.py then resolves an accepted path on
disk (symlinks, descriptors), and the store refuses a new name that only differs from an
existing sibling by its Unicode normalization form (see :func:`twin_key`).

The rules, each with its reason:

* a path is relative to the user's home; leading ``/`` mean the home itself (as the
  staging routes and KBase's own front end send them); ``a//b``, ``./a`` and ``a/`` are
  harmless spellings of ``a/b`` and ``a``; ``..`` is refused anywhere, even where it
  would stay inside; a first component that looks like a Windows drive (``C:``) is a
  client mistake;
* a name is one component: never empty, ``.`` or ``..``; no ``/`` or backslash (no single
  safe meaning); no control character, line or paragraph separator or lone surrogate;
  no leading whitespace (the name would pass for its trimmed twin in every listing;
  trailing whitespace is kept: such files exist and their visible start is intact);
* nothing invisible that changes how a name reads: bidirectional controls (U+202E makes
  ``evil‮txt.exe`` read as ``evilexe.txt``), zero-width and other format characters,
  and blank-looking letters; zero-width joiners stay allowed between two visible
  characters, where emoji sequences and Indic and Persian scripts need them;
* nothing that becomes a separator or a dot-dot under Unicode compatibility folding,
  and no slash look-alikes: harmless on POSIX, but traps for any tool downstream that
  normalizes, and path spoofing in listings;
* at most 255 bytes of UTF-8 per name, 4096 per path (Linux's NAME_MAX and PATH_MAX,
  checked here so the reason is clear) and :data:`MAX_DEPTH` folders deep (deeper trees
  are beyond what any tool handles well: recursive copies and deletes fail on them).

No percent-decoding happens here (that is the HTTP layer's job, done once): ``%2e%2e``
is a literal, odd name.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import PurePosixPath

from protocol.errors import BadRequest, Forbidden, quoted

NAME_MAX_BYTES = 255  # Linux NAME_MAX
PATH_MAX_BYTES = 4096  # Linux PATH_MAX
MAX_DEPTH = 100  # components of a path, the file's own name included
HOME = PurePosixPath(".")
# The Globus link file of KBase deployments: written by the server itself, and like every
# protected path, no client may create, replace, move or delete it.
GLOBUS_LINK = PurePosixPath(".globus_id")
PROTECTED = frozenset({GLOBUS_LINK})

# Cc: C0/C1 controls incl. NUL, DEL, NEL; Zl/Zp: U+2028/U+2029; Cs: lone surrogates,
# which cannot even be encoded into a file name.
_UNPRINTABLE_CATEGORIES = frozenset({"Cc", "Zl", "Zp", "Cs"})
_JOINERS = frozenset("\u200c\u200d")  # zero-width non-joiner and joiner
# Letters and symbols that render as nothing: Hangul fillers, braille blank.
_BLANK_LOOKING = frozenset("\u115f\u1160\u3164\uffa0\u2800")
# Slash look-alikes that NFKC leaves alone (U+2215 has no compatibility mapping).
_SLASH_LOOKALIKES = frozenset("\u2044\u2215\u29f8\u29f9\uff0f\uff3c\ufe68")
_DANGEROUS_AFTER_NFKC = ("/", "\\", "\x00")
_DRIVE = re.compile(r"[A-Za-z]:")


def _codepoint(char: str) -> str:
    return f"U+{ord(char):04X}"


def _is_visible(char: str) -> bool:
    category = unicodedata.category(char)
    return category[0] in "LMNPS" and char not in _BLANK_LOOKING


def _check_characters(name: str, what: str) -> None:
    for index, char in enumerate(name):
        category = unicodedata.category(char)
        if category in _UNPRINTABLE_CATEGORIES:
            raise BadRequest(f"{what} must not contain the control character {_codepoint(char)}")
        if char in _JOINERS:
            between_visible = (
                0 < index < len(name) - 1
                and _is_visible(name[index - 1])
                and _is_visible(name[index + 1])
            )
            if between_visible:
                continue
        if category == "Cf" or char in _BLANK_LOOKING:
            raise BadRequest(
                f"{what} must not contain the invisible character {_codepoint(char)}, "
                "which changes how the name reads"
            )
        if char in _SLASH_LOOKALIKES:
            raise BadRequest(
                f"{what} must not contain {_codepoint(char)}, which looks like a slash"
            )
        if char == "\\":
            raise BadRequest(f"{what} must not contain a backslash, got {quoted(name)}")


def check_name(name: str, *, field: str = "name") -> str:
    """``name`` if it may name one file or folder; else BadRequest naming ``field``."""
    if not name:
        raise BadRequest(f"{field} must not be empty")
    if name in (".", ".."):
        raise BadRequest(f"{field} must not be {name!r}")
    if "/" in name:
        raise BadRequest(f"{field} must not contain '/', got {quoted(name)}")
    _check_characters(name, field)
    if name[0].isspace():
        raise BadRequest(f"{field} must not start with whitespace, got {quoted(name)}")
    if len(name.encode("utf-8")) > NAME_MAX_BYTES:
        raise BadRequest(f"{field} must be at most {NAME_MAX_BYTES} bytes in UTF-8")
    folded = unicodedata.normalize("NFKC", name)
    dangerous = folded in (".", "..") or any(c in folded for c in _DANGEROUS_AFTER_NFKC)
    if folded != name and dangerous:
        raise BadRequest(f"{field} {quoted(name)} reads as {quoted(folded)} after Unicode folding")
    return name


def _check_whole(path: PurePosixPath, field: str) -> PurePosixPath:
    if path.parts and _DRIVE.match(path.parts[0]):
        raise BadRequest(f"{field} must not start with a Windows drive, got {quoted(str(path))}")
    if len(path.parts) > MAX_DEPTH:
        raise BadRequest(f"{field} must be at most {MAX_DEPTH} folders deep")
    if len(str(path).encode("utf-8")) > PATH_MAX_BYTES:
        raise BadRequest(f"{field} must be at most {PATH_MAX_BYTES} bytes in UTF-8")
    return path


def area_path(text: str | PurePosixPath, *, field: str = "path") -> PurePosixPath:
    """The path ``text`` names inside the user's area (``.`` for the home itself)."""
    raw = text.as_posix() if isinstance(text, PurePosixPath) else text
    if not isinstance(raw, str):
        raise BadRequest(f"{field} must be text")
    components = [part for part in raw.split("/") if part not in ("", ".")]
    for component in components:
        if component == "..":
            raise BadRequest(f"{field} must not contain '..', got {quoted(raw)}")
        check_name(component, field=f"{field} component")
    return _check_whole(PurePosixPath(*components), field)


def child_path(
    directory: PurePosixPath, name: str, *, field: str = "name", path_field: str = "path"
) -> PurePosixPath:
    """``name`` (one component, ``field`` in reasons) inside the accepted ``directory``."""
    check_name(name, field=field)
    return _check_whole(directory / name, path_field)


def check_creatable(path: PurePosixPath, *, field: str = "path") -> PurePosixPath:
    """``path`` (accepted by :func:`area_path`) if a client may create an entry there: not
    the home itself, not a protected file (403)."""
    if path == HOME:
        raise Forbidden(f"{field} may not be the home folder")
    if path in PROTECTED:
        raise Forbidden(f"{field} may not be the protected file {path}")
    return path


def twin_key(name: str) -> str:
    """What two names that look alike share: their NFC form. The store refuses a new name
    whose key equals that of a different existing sibling (an NFC/NFD twin)."""
    return unicodedata.normalize("NFC", name)
