"""The staging API as Python calls: list, metadata, existence, download, move, delete, mkdir.

Paths are relative to the user's home on the server (``""`` is the home itself); every
refusal is a ServerError with the server's one-line reason.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any
from urllib.parse import quote

import requests

from .client_http import ServerError, send

Record = dict[str, Any]


def area_path(text: str) -> str:
    """A path in the staging area as the routes take it: no leading or trailing slash,
    no ``.`` parts; ``""`` for the home itself.

    ValueError for ``..``: HTTP clients resolve it in the URL before sending, so that
    ``rm a/../../delete/b`` would reach another route than the one meant."""
    path = PurePosixPath(text.strip("/") or ".")
    if ".." in path.parts:
        raise ValueError(f"a path in the staging area cannot contain '..': {text!r}")
    return "" if str(path) == "." else str(path)


def direct_children(entries: list[Record], folder: str) -> list[Record]:
    """The entries one level below ``folder``, from a listing that may go deeper.

    An entry's ``path`` is ``<user>/<path in the area>``."""
    parent = PurePosixPath(folder or ".")
    children = []
    for entry in entries:
        parts = PurePosixPath(str(entry.get("path", ""))).parts[1:]
        inside = PurePosixPath(*parts) if parts else PurePosixPath(".")
        if inside != parent and inside.parent == parent:
            children.append(entry)
    return children


class StagingClient:
    def __init__(self, base_url: str, session: requests.Session):
        self.base_url = base_url
        self.session = session

    def url(self, route: str, path: str) -> str:
        return f"{self.base_url}/{route}/{quote(area_path(path), safe='/')}"

    def list(self, path: str, show_hidden: bool = False) -> list[Record]:
        """One level: asks for depth 1, and keeps only direct children of a deeper answer."""
        params = {"depth": "1"}
        if show_hidden:
            params["showHidden"] = "true"
        answer = send(self.session, "GET", self.url("list", path), params=params)
        entries = _json(answer, list)
        if not all(isinstance(entry, dict) for entry in entries):
            raise ServerError(None, f"the server's listing holds a non-record: {answer.url}")
        return direct_children(entries, area_path(path))

    def metadata(self, path: str) -> Record:
        return _json(send(self.session, "GET", self.url("metadata", path)), dict)

    def existence(self, path: str) -> Record:
        """Whether ``path`` itself exists, and is a folder. (Sent with a leading ``/``: a
        bare name would be looked for anywhere in the tree, as the KBase service does.)"""
        url = f"{self.base_url}/existence//{quote(area_path(path), safe='/')}"
        return _json(send(self.session, "GET", url), dict)

    def download(self, path: str, offset: int) -> requests.Response:
        """The file's bytes from ``offset`` on (a streamed response: close it)."""
        # identity: exactly the named file's bytes, never a compressed sibling's.
        headers = {"Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        return send(self.session, "GET", self.url("download", path), headers=headers, stream=True)

    def move(self, source: str, target: str) -> None:
        send(self.session, "PATCH", self.url("mv", source), json={"newPath": area_path(target)})

    def delete(self, path: str) -> None:
        send(self.session, "DELETE", self.url("delete", path))

    def mkdir(self, path: str) -> tuple[bool, Record]:
        """(created now, the folder's record)."""
        response = send(self.session, "POST", self.url("mkdir", path))
        return response.status_code == 201, _json(response, dict)


def _json(response: requests.Response, kind: type[list] | type[dict]) -> Any:
    """The answer's JSON document, which must be a ``kind``; else a ServerError."""
    try:
        document = response.json()
    except ValueError:
        document = None
    if not isinstance(document, kind):
        raise ServerError(None, f"unexpected answer (not a JSON {kind.__name__}): {response.url}")
    return document
