"""Where an upload lands, relative to the user's staging area: pure validation.

Only names are checked here; resolving them on disk (symlinks, existing files) is
the job of store/paths.py. Names are never trimmed or altered: what the client sent
is what lands, or the upload is refused at creation with the reason.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import PurePosixPath

from protocol.errors import BadRequest, quoted
from protocol.metadata import metadata_text

NAME_MAX_BYTES = 255  # Linux NAME_MAX
PATH_MAX_BYTES = 4096  # Linux PATH_MAX

# Cc: C0/C1 controls incl. NUL, NEL; Zl/Zp: U+2028/U+2029; Cs: lone surrogates, which
# cannot be encoded to a file name at all.
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Zl", "Zp", "Cs"})
# "C:x", "C:\x", "C:/x": a Windows drive, meaningless here and surely a client mistake.
_DRIVE = re.compile(r"[A-Za-z]:")


def _forbidden_char(text: str) -> str | None:
    for char in text:
        if unicodedata.category(char) in _FORBIDDEN_CATEGORIES:
            return char
    return None


def _check_component(component: str, what: str) -> None:
    """Rules shared by a file name and each directory of a path."""
    char = _forbidden_char(component)
    if char is not None:
        raise BadRequest(f"{what} must not contain control character {char!r}")
    if "\\" in component:
        raise BadRequest(f"{what} must not contain a backslash, got {quoted(component)}")
    # Leading whitespace is refused: the name looks like its trimmed twin in every
    # listing and is nearly always a paste accident. Trailing whitespace is kept:
    # such files exist on POSIX systems, the visible start of the name is intact, and
    # refusing it would make them impossible to upload by name.
    if component[0].isspace():
        raise BadRequest(f"{what} must not start with whitespace, got {quoted(component)}")
    if len(component.encode("utf-8")) > NAME_MAX_BYTES:
        raise BadRequest(f"{what} must be at most {NAME_MAX_BYTES} bytes in UTF-8")


def validate_filename(name: str, *, field: str = "filename") -> str:
    """A single path component to create a file under; returned unchanged.

    `field` names the metadata key the name came from, for the reason.
    """
    if not name:
        raise BadRequest(f"{field} metadata is required and must not be empty")
    if "/" in name:
        raise BadRequest(f"{field} must not contain '/', got {quoted(name)}")
    if name in (".", ".."):
        raise BadRequest(f"{field} must not be {name!r}")
    _check_component(name, field)
    return name


def validate_relative_dir(path: str, *, field: str = "directory") -> PurePosixPath:
    """A user-supplied directory, relative to the user's area; "" means its root (".").

    Repeated or trailing "/" and "." components are dropped, as POSIX resolves
    them; nothing else is rewritten.
    """
    char = _forbidden_char(path)
    if char is not None:
        raise BadRequest(f"{field} must not contain control character {char!r}")
    if "\\" in path:
        raise BadRequest(f"{field} must use '/', not a backslash, got {quoted(path)}")
    if path.startswith("/") or _DRIVE.match(path):
        raise BadRequest(f"{field} must be relative to your area, got {quoted(path)}")
    components = [part for part in path.split("/") if part not in ("", ".")]
    for component in components:
        if component == "..":
            raise BadRequest(f"{field} must not contain '..', got {quoted(path)}")
        _check_component(component, f"{field} component")
    directory = PurePosixPath(*components)
    if len(str(directory).encode("utf-8")) > PATH_MAX_BYTES:
        raise BadRequest(f"{field} must be at most {PATH_MAX_BYTES} bytes in UTF-8")
    return directory


def _relative_path_dir(relative_path: str) -> PurePosixPath:
    # Uppy sends a dropped folder's file as its FileSystemEntry.fullPath, which starts
    # with "/" but is relative to the drop, so leading slashes are not "absolute" here.
    # The whole path is checked, then its last component (the file's own name, which
    # `filename` already carries) is dropped.
    return validate_relative_dir(relative_path.lstrip("/"), field="relativePath").parent


def upload_destination(metadata: dict[str, bytes]) -> PurePosixPath:
    """The upload's path relative to the user's area, from decoded Upload-Metadata.

    File name: `filename`, else `name` (Uppy sends both, tuspy only `filename`).
    Directory: `destPath`, else the directory part of Uppy's `relativePath`, which
    tus-js-client sends as the string "null" when the file came from no folder.
    """
    name_key = "filename" if "filename" in metadata else "name"
    filename = metadata_text(metadata, name_key)
    if filename is None:
        raise BadRequest("Upload-Metadata must include 'filename' (or 'name')")
    validate_filename(filename, field=name_key)

    dest_path = metadata_text(metadata, "destPath")
    relative_path = metadata_text(metadata, "relativePath")
    if dest_path is not None:
        directory = validate_relative_dir(dest_path, field="destPath")
    elif relative_path is not None and relative_path != "null":
        directory = _relative_path_dir(relative_path)
    else:
        directory = PurePosixPath(".")
    destination = directory / filename
    if len(str(destination).encode("utf-8")) > PATH_MAX_BYTES:
        raise BadRequest(f"destination path must be at most {PATH_MAX_BYTES} bytes in UTF-8")
    return destination
