"""The staging area API, with the KBase staging service's route names and shapes.

Every path is relative to the caller's home (a leading ``/`` means the home itself), is
checked by the same rules as upload destinations, and is resolved inside the caller's
area only: another user's files do not exist here.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path, PurePosixPath

from aiohttp import web

from protocol.content_disposition import attachment
from protocol.errors import BadRequest, Conflict, Forbidden, NotFound
from store.area_files import entry, list_directory, move_no_replace, remove_path
from store.paths import ensure_dir

from .services import Services, authenticated_user, services_of

TEST_SERVICE_TEXT = "This is just a test. This is only a test."


def area_path(request: web.Request) -> PurePosixPath:
    """The request's path inside the user's area ("." for the home itself)."""
    return _relative(request.match_info.get("path", ""))


def _relative(raw: str) -> PurePosixPath:
    text = raw.lstrip("/")
    return PurePosixPath(text) if text else PurePosixPath(".")


async def _caller(request: web.Request) -> tuple[Services, str, Path]:
    """Authenticate; the user's home exists afterwards (made race-free on first use)."""
    services = services_of(request)
    user = await authenticated_user(request)
    home = services.layout.user_home(user)
    await asyncio.to_thread(ensure_dir, home)
    return services, user, home


def _missing(user: str, relative: PurePosixPath) -> NotFound:
    return NotFound(f"path {user}/{relative} does not exist")


async def test_service(request: web.Request) -> web.Response:
    return web.Response(text=TEST_SERVICE_TEXT)


async def test_auth(request: web.Request) -> web.Response:
    _, user, _ = await _caller(request)
    return web.Response(text=f"I'm authenticated as {user}")


async def list_files(request: web.Request) -> web.Response:
    services, user, home = await _caller(request)
    relative = area_path(request)
    directory = services.layout.staged_path(user, relative)
    show_hidden = request.query.get("showHidden", "").lower() in ("true", "1", "yes")
    try:
        entries = await asyncio.to_thread(list_directory, directory, home, show_hidden)
    except FileNotFoundError:
        raise _missing(user, relative) from None
    except NotADirectoryError:
        raise BadRequest(f"{user}/{relative} is a file, not a directory") from None
    return web.json_response(entries)


async def metadata(request: web.Request) -> web.Response:
    services, user, _ = await _caller(request)
    relative = area_path(request)
    try:
        record = await services.metadata.metadata(user, relative)
    except FileNotFoundError:
        raise _missing(user, relative) from None
    return web.json_response(record)


async def download(request: web.Request) -> web.StreamResponse:
    services, user, _ = await _caller(request)
    relative = area_path(request)
    path = services.layout.staged_path(user, relative)
    if await asyncio.to_thread(path.is_dir):
        raise BadRequest(f"{user}/{relative} is a directory not a file")
    if not await asyncio.to_thread(path.is_file):
        raise _missing(user, relative)
    # FileResponse streams with sendfile and answers Range requests (206/416) itself.
    return web.FileResponse(path, headers={"Content-Disposition": attachment(path.name)})


async def delete(request: web.Request) -> web.Response:
    services, user, _ = await _caller(request)
    relative = area_path(request)
    if relative == PurePosixPath("."):
        raise Forbidden("cannot delete home directory")
    path = services.layout.staged_path(user, relative)
    if not await asyncio.to_thread(remove_path, path):
        raise _missing(user, relative)
    await asyncio.to_thread(remove_path, services.layout.sidecar_path(user, relative))
    return web.Response(text=f"successfully deleted {user}/{relative}")


async def move(request: web.Request) -> web.Response:
    services, user, _ = await _caller(request)
    relative = area_path(request)
    target_text = await _new_path(request)
    target = _relative(target_text)
    if PurePosixPath(".") in (relative, target):
        raise Forbidden("cannot rename or move the home directory")
    layout = services.layout
    source_path = layout.staged_path(user, relative)
    target_path = layout.staged_path(user, target)
    if not await asyncio.to_thread(os.path.lexists, source_path):
        raise _missing(user, relative)
    if target_path == source_path or target_path.is_relative_to(source_path):
        raise BadRequest(f"cannot move {user}/{relative} into itself")
    await asyncio.to_thread(ensure_dir, target_path.parent)
    try:
        await asyncio.to_thread(move_no_replace, source_path, target_path)
    except FileExistsError:
        raise Conflict(f"{user}/{target} already exists") from None
    source_sidecar = layout.sidecar_path(user, relative)
    if await asyncio.to_thread(os.path.lexists, source_sidecar):
        target_sidecar = layout.sidecar_path(user, target)
        await asyncio.to_thread(ensure_dir, target_sidecar.parent)
        await asyncio.to_thread(remove_path, target_sidecar)  # a stale one from an old file
        await asyncio.to_thread(os.replace, source_sidecar, target_sidecar)
    return web.Response(text=f"successfully moved {user}/{relative} to {user}/{target}")


async def _new_path(request: web.Request) -> str:
    """``newPath`` from a JSON or form body."""
    new_path: object = None
    if request.content_type == "application/json":
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            raise BadRequest("body is not valid JSON") from None
        new_path = body.get("newPath") if isinstance(body, dict) else None
    else:
        form = await request.post()
        new_path = form.get("newPath")
    if not isinstance(new_path, str) or not new_path.strip("/"):
        raise BadRequest("must provide newPath field in body")
    return new_path


async def existence(request: web.Request) -> web.Response:
    services, user, _ = await _caller(request)
    path = services.layout.staged_path(user, area_path(request))
    exists = await asyncio.to_thread(os.path.exists, path)
    is_folder = exists and await asyncio.to_thread(os.path.isdir, path)
    return web.json_response({"exists": exists, "isFolder": is_folder})


async def mkdir(request: web.Request) -> web.Response:
    services, user, home = await _caller(request)
    relative = area_path(request)
    path = services.layout.staged_path(user, relative)
    existed = await asyncio.to_thread(path.is_dir)
    try:
        await asyncio.to_thread(ensure_dir, path)
    except NotADirectoryError:
        raise Conflict(f"a file is in the way of {user}/{relative}") from None
    record = await asyncio.to_thread(entry, path, home)
    return web.json_response(record, status=200 if existed else 201, dumps=json.dumps)


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/test-service", test_service)
    router.add_get("/test-auth", test_auth)
    router.add_get("/list/{path:.*}", list_files)
    router.add_get("/list", list_files)
    router.add_get("/metadata/{path:.*}", metadata)
    router.add_get("/download/{path:.+}", download)
    router.add_delete("/delete/{path:.*}", delete)
    router.add_patch("/mv/{path:.*}", move)
    router.add_get("/existence/{path:.*}", existence)
    router.add_post("/mkdir/{path:.+}", mkdir)
