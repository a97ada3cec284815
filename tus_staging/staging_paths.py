"""The one place where the staging routes turn a request's path text into a path
relative to the caller's home.

Every route that names a path comes through here: leading ``/`` ignored, ``/`` alone or
nothing being the home itself, checked by the one path policy (protocol/paths.py) with
the request's field named in a refusal. Routes that create a name (a folder, a move's
target, what an archive holds) also get the creation rules: not the home, not a
protected file. Where a path then lives on disk, staged file and sidecar, links checked,
is store/area.py's ``locate`` (through ``Caller.at``).
"""

from __future__ import annotations

from pathlib import PurePosixPath

from protocol.errors import NotFound
from protocol.paths import area_path, check_creatable, child_path
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


def upload_destination(folder: str, filename: str) -> PurePosixPath:
    """Where ``POST /upload`` puts ``filename`` (one name) inside ``folder`` (its
    ``destPath``): the one path policy, each field named in its refusal."""
    return child_path(
        area_path(folder, field="destPath"), filename, field="filename", path_field="destination"
    )


def missing(where: AreaPath) -> NotFound:
    """The KBase service's 404 for a path that names nothing."""
    return NotFound(f"path {where.user_path} does not exist")
