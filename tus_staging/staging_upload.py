"""``POST /upload``: the KBase staging service's multipart upload, through the same writer
as a tus upload.

The form holds a ``destPath`` field, then the file in an ``uploads`` part (other parts in
between are skipped, as the KBase service does, within a bound). The file's bytes stream
into an upload of the store like any other: written in blocks, hashed, scanned, fsynced
and committed, then moved atomically into staging with its sidecar (``source`` "KBase
upload"). The upload cannot be resumed (the form is one request), so a body that does
not arrive whole leaves nothing: the upload is terminated.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiohttp
from aiohttp import web

from protocol.errors import BadRequest, Forbidden, PayloadTooLarge, ServiceUnavailable
from store.area_files import entry

from .body_pump import BodyEnd, pump_part
from .receive import received_bytes
from .services import Services
from .staging_context import caller
from .staging_paths import upload_destination

SOURCE = "KBase upload"
MISSING = "must provide destPath and uploads in body"
# Parts other than destPath and uploads are skipped: at most this many, this large each.
MAX_SKIPPED_PARTS = 100
MAX_FIELD_BYTES = 64 * 1024


async def upload(request: web.Request) -> web.Response:
    who = await caller(request)
    services = who.services
    if not request.body_exists:
        raise BadRequest(MISSING)
    try:
        reader = await request.multipart()
    except (AssertionError, ValueError, KeyError):  # not multipart, or no boundary
        raise BadRequest(f"{MISSING} as multipart/form-data") from None
    dest_path, file_part = await _dest_path_and_file(reader)
    filename = file_part.filename
    if dest_path is None or not filename:
        raise BadRequest(MISSING)
    _refuse_kbase_names(filename)
    destination = upload_destination(dest_path, filename)
    record = await services.uploads.create(
        who.user, length=None, metadata="", destination=destination, source=SOURCE
    )
    try:
        await _receive(services, who.user, record.id, file_part, received_bytes(request))
    except BaseException:
        # Nothing of a form that did not arrive whole (or was refused) is kept.
        await asyncio.shield(_terminate(services, who.user, record.id))
        raise
    where = who.at(destination)
    return web.json_response([await asyncio.to_thread(entry, where.staged, where.home)])


async def _dest_path_and_file(
    reader: aiohttp.MultipartReader,
) -> tuple[str | None, aiohttp.BodyPartReader]:
    dest_path: str | None = None
    for _ in range(MAX_SKIPPED_PARTS + 2):
        part = await reader.next()
        if part is None:
            break
        if not isinstance(part, aiohttp.BodyPartReader):
            raise BadRequest("nested multipart bodies are not taken")
        if part.name == "uploads":
            return dest_path, part
        text = await _bounded(part)
        if part.name == "destPath":
            try:
                dest_path = text.decode("utf-8", "strict")
            except UnicodeDecodeError:
                raise BadRequest("destPath is not valid UTF-8") from None
    raise BadRequest(MISSING)


async def _bounded(part: aiohttp.BodyPartReader) -> bytes:
    data = b""
    while chunk := await part.read_chunk(MAX_FIELD_BYTES):
        data += chunk
        if len(data) > MAX_FIELD_BYTES:
            raise BadRequest(f"form field {part.name!r} is longer than {MAX_FIELD_BYTES} bytes")
    return data


def _refuse_kbase_names(filename: str) -> None:
    """The KBase service's own refusals of a file name (403, in its words)."""
    if filename.lstrip() != filename:
        raise Forbidden("cannot upload file with name beginning with space")
    if "," in filename:
        raise Forbidden("cannot upload file with ',' in name")
    if filename.startswith("."):
        raise Forbidden("cannot upload file with name beginning with '.'")


async def _receive(
    services: Services,
    user: str,
    upload_id: str,
    part: aiohttp.BodyPartReader,
    on_commit: Callable[[int], None],
) -> None:
    config = services.config
    async with services.uploads.session(user, upload_id) as session:
        async with session.appending(on_commit=on_commit, renewed=True) as appender:
            end = await pump_part(part, appender, config.block_size, config.max_size)
            await appender.end_body(whole=end is BodyEnd.COMPLETE)
        if end is BodyEnd.TOO_LARGE:
            raise PayloadTooLarge(f"the file is larger than the maximum of {config.max_size}")
        if end is not BodyEnd.COMPLETE:
            raise ServiceUnavailable(f"the upload {end.value}; nothing was kept, send it again")
        await session.declare_length(session.record.offset)
        await session.finish()


async def _terminate(services: Services, user: str, upload_id: str) -> None:
    async with services.uploads.session(user, upload_id, terminating=True) as session:
        await session.terminate()
