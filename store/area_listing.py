"""Walking a user's staging area: the entries behind /list, /search, /existence, /similar.

One walk for all of them, in the KBase staging service's entry shape: ``name``, ``path``
(``user/relative``), ``mtime`` (ms), ``size``, ``isFolder``, and ``source`` on files.
Iterative (any depth), sorted (folders first, then by name; a folder is followed by its
own entries), and never through a link: a link is listed as what it points to when
that is inside the area (and not listed otherwise), but a linked folder is not entered,
so no tree is listed twice and no loop is walked. Entries that vanish during the walk
are left out; sockets, FIFOs and devices are not listed.

All calls block; the service runs a whole walk in one worker thread.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from operator import itemgetter
from pathlib import Path, PurePosixPath
from typing import Any

from .area_files import mtime_ms
from .paths import is_inside

UNKNOWN_SOURCE = "Unknown"  # as the KBase staging service says of files it did not receive
JGI_SOURCE = "JGI import"


def jgi_metadata_name(name: str) -> str:
    """The JGI metadata file that sits beside a file imported from JGI."""
    return f".{name}.jgi"


def _recorded_source(sidecar: str) -> str | None:
    """The source a sidecar records; None when it has none or cannot be read. (Listings
    read every sidecar of a folder: bytes and string paths, no pathlib on this path.)"""
    try:
        with open(sidecar, "rb") as handle:
            record = json.loads(handle.read())
    except (OSError, ValueError):
        return None
    source = record.get("source") if isinstance(record, dict) else None
    return source if isinstance(source, str) else None


class AreaWalk:
    """The entries below ``start`` (relative to the user's home), depth first."""

    def __init__(
        self,
        home: Path,
        metadata_home: Path,
        start: PurePosixPath,
        *,
        show_hidden: bool,
        max_depth: int | None = None,
        with_source: bool = True,
    ) -> None:
        self.home = home
        self.metadata_home = metadata_home
        self.start = "" if start == PurePosixPath(".") else start.as_posix()
        self.show_hidden = show_hidden
        self.max_depth = max_depth
        self.with_source = with_source
        self.user = home.name
        self.real_home = os.path.realpath(home)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        """FileNotFoundError / NotADirectoryError when ``start`` is not a folder."""
        records, walk_into = self._folder(self.start, must_exist=True)
        stack = [(iter(records), walk_into)]
        while stack:
            level, walk_into = stack[-1]
            record = next(level, None)
            if record is None:
                stack.pop()
                continue
            yield record
            child = walk_into.get(record["name"]) if record["isFolder"] else None
            if child is not None and (self.max_depth is None or len(stack) < self.max_depth):
                records, deeper = self._folder(child)
                stack.append((iter(records), deeper))

    def _folder(
        self, relative: str, must_exist: bool = False
    ) -> tuple[list[dict[str, Any]], dict[str, str]]:
        """The records of one folder, sorted, and the relative paths of the folders to walk
        into, by name (linked folders are not walked into)."""
        folder = os.path.join(self.home, relative) if relative else str(self.home)
        names: set[str] = set()
        folders: list[dict[str, Any]] = []
        files: list[dict[str, Any]] = []
        walk_into: dict[str, str] = {}
        try:
            # Entries are looked at as they come and not kept: fewer objects that live
            # long enough for the garbage collector to walk them (it holds the GIL).
            with os.scandir(folder) as scan:
                for item in scan:
                    names.add(item.name)
                    if not self.show_hidden and item.name.startswith("."):
                        continue
                    looked = self._stat(item)
                    if looked is None:
                        continue
                    info, linked = looked
                    child = f"{relative}/{item.name}" if relative else item.name
                    is_folder = stat.S_ISDIR(info.st_mode)
                    record = {
                        "name": item.name,
                        "path": f"{self.user}/{child}",
                        "mtime": mtime_ms(info.st_mtime),
                        "size": info.st_size,
                        "isFolder": is_folder,
                    }
                    if not is_folder:
                        files.append(record)
                    else:
                        folders.append(record)
                        if not linked:
                            walk_into[item.name] = child
        except (FileNotFoundError, NotADirectoryError):
            if must_exist:
                raise
            return [], {}  # removed, or replaced by a file, since its parent was read
        if self.with_source:
            sidecars = self._sidecar_names(relative)
            for record in files:
                record["source"] = self._source(relative, record["name"], names, sidecars)
        # Plain string keys: the sort's comparisons run in C without a Python call each,
        # so even a folder of 50,000 entries holds the GIL for a few milliseconds only.
        folders.sort(key=itemgetter("name"))
        files.sort(key=itemgetter("name"))
        return folders + files, walk_into

    def _stat(self, item: os.DirEntry[str]) -> tuple[os.stat_result, bool] | None:
        """What to list an entry as, and whether it is a link; None to leave it out."""
        try:
            if item.is_symlink():
                if not is_inside(os.path.realpath(item.path), self.real_home):
                    return None
                info, linked = os.stat(item.path), True
            else:
                info, linked = item.stat(follow_symlinks=False), False
        except OSError:  # vanished, or a dangling or looping link
            return None
        if not (stat.S_ISDIR(info.st_mode) or stat.S_ISREG(info.st_mode)):
            return None
        return info, linked

    def _sidecar_names(self, relative: str) -> frozenset[str]:
        folder = os.path.join(self.metadata_home, relative) if relative else self.metadata_home
        try:
            with os.scandir(folder) as scan:
                return frozenset(item.name for item in scan)
        except OSError:
            return frozenset()

    def _source(self, relative: str, name: str, names: set[str], sidecars: frozenset[str]) -> str:
        """Where a file came from, as its sidecar says; else as the KBase service guesses:
        a JGI metadata file beside it means a JGI import."""
        if name in sidecars:
            recorded = _recorded_source(os.path.join(self.metadata_home, relative, name))
            if recorded is not None:
                return recorded
        if jgi_metadata_name(name) in names:
            return JGI_SOURCE
        return UNKNOWN_SOURCE
