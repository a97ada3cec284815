"""The staging routes that change the area: /delete, /mv, /mkdir, /decompress.

Sidecars follow what they describe: a deleted entry's sidecar (or folder of sidecars)
goes with it, a moved one's moves with it. Entries that vanish or appear under an
operation while it runs make it answer 404 or 409 with the reason, never 500.
"""

from __future__ import annotations

import asyncio
import errno
import os

from aiohttp import web

from protocol.errors import BadRequest, Conflict, Forbidden, NotFound
from store.archive import Extraction, ExtractionLimits, archive_kind, extract
from store.area import AreaPath
from store.area_files import (
    MoveIntoItself,
    TreeChanged,
    entry,
    move_entry,
    move_sidecar,
    remove_path,
)
from store.paths import ensure_dir, refuse_twin

from .staging_context import body_field, caller, requested
from .staging_paths import new_name


def _remove_with_sidecar(where: AreaPath) -> bool:
    """Remove the entry and its sidecar (an orphan one too); whether the entry was there."""
    removed = remove_path(where.staged)
    remove_path(where.sidecar)
    return removed


def _changeable(where: AreaPath, verb: str) -> AreaPath:
    """``where``, unless it is the home or the protected Globus link file (403)."""
    if where.is_home:
        raise Forbidden(f"cannot {verb} home directory")
    if where.is_protected:
        raise Forbidden(f"cannot {verb} protected file")
    return where


async def delete(request: web.Request) -> web.Response:
    who = await caller(request)
    where = _changeable(who.at(requested(request)), "delete")
    try:
        removed = await asyncio.to_thread(_remove_with_sidecar, where)
    except TreeChanged as error:
        raise Conflict(
            f"{where.user_path} changed while it was deleted ({error.strerror})"
        ) from None
    if not removed:
        raise NotFound(f"could not delete {where.user_path}")
    return web.Response(text=f"successfully deleted {where.user_path}")


def _move_with_sidecar(source: AreaPath, target: AreaPath) -> None:
    refuse_twin(target.home, target.relative, repr(target.user_path))
    move_entry(source.staged, target.staged)
    move_sidecar(source.sidecar, target.sidecar, source.metadata_home)


async def move(request: web.Request) -> web.Response:
    who = await caller(request)
    source = _changeable(who.at(requested(request)), "rename or move")
    new_path = await body_field(request, "newPath")
    if new_path is None or not new_path.strip("/"):
        raise BadRequest("must provide newPath field in body")
    target = who.at(new_name(new_path, field="newPath"))
    try:
        await asyncio.to_thread(_move_with_sidecar, source, target)
    except FileNotFoundError:
        raise NotFound(f"{source.user_path} not found") from None
    except NotADirectoryError:
        folder = who.at(target.relative.parent).user_path
        raise Conflict(f"cannot move to {target.user_path}: no folder {folder}") from None
    except FileExistsError:
        raise Conflict(f"{target.user_path} allready exists") from None  # KBase's words
    except MoveIntoItself:
        raise BadRequest(f"cannot move {source.user_path} into itself") from None
    except OSError as error:
        if error.errno not in (errno.EXDEV, errno.EBUSY):  # another filesystem, a mount point
            raise
        raise Conflict(f"cannot move {source.user_path}: {error.strerror}") from None
    return web.Response(text=f"successfully moved {source.user_path} to {target.user_path}")


async def mkdir(request: web.Request) -> web.Response:
    who = await caller(request)
    where = who.at(new_name(request.match_info.get("path", "")))
    existed = await asyncio.to_thread(os.path.isdir, where.staged)
    await asyncio.to_thread(refuse_twin, where.home, where.relative, repr(where.user_path))
    await asyncio.to_thread(ensure_dir, where.staged)  # a file in the way: 409
    record = await asyncio.to_thread(entry, where.staged, where.home)
    return web.json_response(record, status=200 if existed else 201)


async def decompress(request: web.Request) -> web.Response:
    """Extract an archive beside itself (see store/archive.py for what is refused)."""
    who = await caller(request)
    where = await who.file_at(requested(request))
    archive_kind(where.staged.name)  # 400 for a name that says no archive
    config = who.services.config
    folder = where.relative.parent
    job = Extraction(
        archive=where.staged,
        sidecars=where.sidecar.parent,
        metadata_home=where.metadata_home,
        user=who.user,
        folder=folder,
        digest_names=config.digest_names,
        limits=ExtractionLimits(config.decompress_max_bytes, config.decompress_max_members),
        check_name=lambda member: new_name(folder / member, field="name"),
        stopping=who.state.stopping,
    )
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(who.state.archives, extract, job)
    return web.Response(text=f"succesfully decompressed {where.user_path}")  # KBase's words
