"""The one place where the staging routes turn request paths into places on disk.

Every route that names a path comes through here: the path is relative to the caller's
home (leading ``/`` ignored, ``/`` alone or nothing being the home itself), checked by the
area's path policy (lexical rules, links that stay inside) and located both in the
staging area and among the sidecars. Routes that create a name (a folder, a move's
target, what an archive holds) also apply the upload destinations' naming rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from protocol.errors import NotFound
from protocol.paths import HOME, PROTECTED, area_path, check_creatable
from store.layout import DataLayout


@dataclass(frozen=True)
class AreaPath:
    """A path in one user's area: as the user names it, and where it lives."""

    user: str
    relative: PurePosixPath
    staged: Path  # in the staging area (not resolved: a final link stays a link)
    sidecar: Path  # its metadata sidecar (or folder of sidecars)
    home: Path  # the user's home in the staging area
    metadata_home: Path  # the user's folder of sidecars

    @property
    def user_path(self) -> str:
        """``user/relative`` as the KBase routes show paths (``user`` for the home)."""
        return self.user if self.is_home else f"{self.user}/{self.relative}"

    @property
    def is_home(self) -> bool:
        return self.relative == HOME

    @property
    def is_protected(self) -> bool:
        return self.relative in PROTECTED


def relative_path(raw: str) -> PurePosixPath:
    """A request's path text as a path relative to the home ("." for the home), by the
    one path policy (protocol/paths.py)."""
    return area_path(raw)


def locate(layout: DataLayout, user: str, relative: PurePosixPath) -> AreaPath:
    """Where ``relative`` lives; UnsafePath (400) if it would leave the user's area."""
    staged = layout.staged_path(user, relative)  # the path policy: lexical rules and links
    metadata_home = layout.sidecar_path(user, HOME)
    return AreaPath(
        user=user,
        relative=relative,
        staged=staged,
        # The same relative path among the sidecars, which only the service writes: a
        # stale sidecar in the way is no reason to refuse (it is cleared when written).
        sidecar=metadata_home.joinpath(*relative.parts),
        home=layout.user_home(user),
        metadata_home=metadata_home,
    )


def new_name(relative: PurePosixPath, field: str = "path") -> PurePosixPath:
    """``relative`` if a client may create an entry there (a folder, a move's target,
    an archive member): the one path policy, and not the home or a protected file.
    BadRequest (400) or Forbidden (403) otherwise."""
    return check_creatable(area_path(relative, field=field), field=field)


def missing(where: AreaPath) -> NotFound:
    """The KBase service's 404 for a path that names nothing."""
    return NotFound(f"path {where.user_path} does not exist")
