"""The one place where the staging routes turn request paths into places on disk.

Every route that names a path comes through here: the path is relative to the caller's
home (leading ``/`` ignored, ``/`` alone or nothing being the home itself), checked by the
area's path policy (lexical rules, links that stay inside) and located both in the
staging area and among the sidecars. Routes that create a name (a folder, a move's
target, what an archive holds) also apply the upload destinations' naming rules.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from protocol.errors import NotFound
from protocol.paths import area_path, check_creatable
from store.area import AreaPath


def relative_path(raw: str) -> PurePosixPath:
    """A request's path text as a path relative to the home ("." for the home), by the
    one path policy (protocol/paths.py)."""
    return area_path(raw)


def new_name(raw: str | PurePosixPath, field: str = "path") -> PurePosixPath:
    """The path ``raw`` names, if a client may create an entry there (a folder, a move's
    target, an archive member): the one path policy, and not the home or a protected
    file. BadRequest (400) or Forbidden (403) naming ``field`` otherwise."""
    return check_creatable(area_path(raw, field=field), field=field)


def missing(where: AreaPath) -> NotFound:
    """The KBase service's 404 for a path that names nothing."""
    return NotFound(f"path {where.user_path} does not exist")
