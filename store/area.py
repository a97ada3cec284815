"""A place in one user's area: where a path a client names lives on disk, staged file and
sidecar both. Resolved through the one path policy and the symlink checks of
store/paths.py (via the layout)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from protocol.paths import HOME, PROTECTED

from .layout import DataLayout


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


def locate(layout: DataLayout, user: str, relative: PurePosixPath) -> AreaPath:
    """Where ``relative`` lives; BadRequest or UnsafePath (400) if the policy refuses it
    or it would leave the user's area."""
    staged = layout.staged_path(user, relative)  # the path policy: lexical rules and links
    metadata_home = layout.metadata_home(user)
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
