"""The staging routes that look: /list, /search, /existence, /similar, /download.

Walks of an area run in one worker thread each, JSON encoding included (in slices, so
the event loop gets the GIL back between them): a listing of 50,000 files never holds
up the other requests.
"""

from __future__ import annotations

import asyncio
import json
import re
import stat
from collections.abc import Iterable
from difflib import SequenceMatcher
from operator import itemgetter
from typing import Any

from aiohttp import web

from protocol.errors import BadRequest
from protocol.paths import HOME
from store.area_listing import AreaWalk

from .file_response import ExactFileResponse, download_headers
from .staging_context import caller, requested, show_hidden, stat_mode
from .staging_paths import missing, relative_path

ENCODE_SLICE = 500  # records per json.dumps call
SIMILARITY_CUT_OFF = 0.75  # as the KBase staging service judges names alike
_LEVELS = re.compile(r"[0-9]{1,6}")


def json_array(records: Iterable[dict[str, Any]]) -> bytes:
    """``records`` as one JSON array, encoded a slice at a time."""
    parts: list[str] = []
    batch: list[dict[str, Any]] = []
    for record in records:
        batch.append(record)
        if len(batch) == ENCODE_SLICE:
            parts.append(json.dumps(batch)[1:-1])
            batch = []
    if batch:
        parts.append(json.dumps(batch)[1:-1])
    return ("[" + ",".join(parts) + "]").encode()


def json_body(body: bytes) -> web.Response:
    return web.Response(body=body, content_type="application/json")


def depth_of(request: web.Request) -> int | None:
    """``depth``: how many levels /list shows (all without it; the KBase service has no
    such parameter and lists everything)."""
    raw = request.query.get("depth")
    if raw is None:
        return None
    if not _LEVELS.fullmatch(raw) or int(raw) < 1:
        raise BadRequest(f"depth must be a number of levels, 1 or more, not {raw!r}")
    return int(raw)


async def list_files(request: web.Request) -> web.Response:
    who = await caller(request)
    where = who.at(requested(request))
    walk = AreaWalk(
        where.home,
        where.metadata_home,
        where.relative,
        show_hidden=show_hidden(request),
        max_depth=depth_of(request),
    )
    try:
        return json_body(await who.walk(lambda: json_array(walk)))
    except FileNotFoundError:
        raise missing(where) from None
    except NotADirectoryError:
        raise BadRequest(f"{where.user_path} is a file not a directory") from None


async def search(request: web.Request) -> web.Response:
    """Files and folders whose path (``user/...``) holds the query, newest first."""
    who = await caller(request)
    query = request.match_info.get("query", "")
    where = who.at(HOME)
    walk = AreaWalk(where.home, where.metadata_home, HOME, show_hidden=show_hidden(request))

    def found() -> bytes:
        matches = [record for record in walk if query in record["path"]]
        matches.sort(key=itemgetter("mtime"), reverse=True)
        return json_array(matches)

    return json_body(await who.walk(found))


async def existence(request: web.Request) -> web.Response:
    """A name without ``/``: whether it is anywhere in the tree (as the KBase service
    answers; ``isFolder`` only if every entry of that name is a folder). With ``/``: the
    path itself, relative to the home."""
    who = await caller(request)
    query = request.match_info.get("path", "")
    if "/" in query:
        where = who.at(relative_path(query))
        mode = await asyncio.to_thread(stat_mode, where.staged)
        is_folder = mode is not None and stat.S_ISDIR(mode)
        return web.json_response({"exists": mode is not None, "isFolder": is_folder})
    home = who.at(HOME)
    walk = AreaWalk(
        home.home, home.metadata_home, HOME, show_hidden=show_hidden(request), with_source=False
    )

    def look() -> dict[str, bool]:
        exists = False
        if query:
            for record in walk:
                if record["name"] == query:
                    exists = True
                    if not record["isFolder"]:  # the answer cannot change any more
                        return {"exists": True, "isFolder": False}
        return {"exists": exists, "isFolder": exists}

    return web.json_response(await who.walk(look))


def alike(name: str, other: str) -> bool:
    """The KBase service's similarity of two names, with difflib's cheap upper bounds
    tried first (same answers, far fewer full comparisons)."""
    matcher = SequenceMatcher(None, name, other)
    return (
        matcher.real_quick_ratio() >= SIMILARITY_CUT_OFF
        and matcher.quick_ratio() >= SIMILARITY_CUT_OFF
        and matcher.ratio() >= SIMILARITY_CUT_OFF
    )


async def similar(request: web.Request) -> web.Response:
    """Files anywhere in the area whose names are like the given file's."""
    who = await caller(request)
    where = await who.file_at(requested(request))
    walk = AreaWalk(where.home, where.metadata_home, HOME, show_hidden=False)
    name = where.relative.name

    def found() -> bytes:
        return json_array(
            record
            for record in walk
            if not record["isFolder"]
            and record["path"] != where.user_path
            and alike(name, record["name"])
        )

    return json_body(await who.walk(found))


async def download(request: web.Request) -> web.StreamResponse:
    who = await caller(request)
    where = await who.file_at(requested(request))
    # Streamed with sendfile; Range requests answered (206/416). A download, never shown.
    return ExactFileResponse(where.staged, headers=download_headers(where.staged.name))
