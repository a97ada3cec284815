"""The tus 1.0.0 endpoint: OPTIONS, POST (creation), HEAD, PATCH, DELETE.

Each handler reads like the protocol: check the headers, find the caller's upload,
take its lock, act on the committed state in Redis, answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from protocol import extensions
from protocol.destination import upload_destination
from protocol.errors import (
    BadRequest,
    Conflict,
    Locked,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
)
from protocol.headers import (
    TUS_VERSION,
    check_patch_content_type,
    check_tus_resumable,
    parse_creation_length,
    parse_length,
    parse_method_override,
    parse_offset,
)
from protocol.metadata import decode_metadata
from store.finalize import finalize
from store.locks import LockLost, UploadLock, acquire_lock
from store.partial import PartialWriter, StreamState, create_partial, partial_path, remove_partial
from store.paths import ensure_dir
from store.record import UploadRecord, UploadStatus, is_upload_id, new_upload_id
from store.state_store import StaleOffset, UploadVanished

from .body_pump import BodyEnd, BodyPump, PumpSettings
from .services import Services, services_of

SUPPORTED_EXTENSIONS = (
    extensions.CREATION,
    extensions.CREATION_WITH_UPLOAD,
    extensions.CREATION_DEFER_LENGTH,
    extensions.TERMINATION,
)


def tus_headers(record: UploadRecord) -> dict[str, str]:
    headers = {"Upload-Offset": str(record.offset), "Cache-Control": "no-store"}
    if record.length is None:
        headers["Upload-Defer-Length"] = "1"
    else:
        headers["Upload-Length"] = str(record.length)
    return headers


async def options(request: web.Request) -> web.Response:
    services = services_of(request)
    headers = {
        "Tus-Resumable": TUS_VERSION,
        "Tus-Version": TUS_VERSION,
        "Tus-Extension": extensions.advertised(SUPPORTED_EXTENSIONS),
    }
    if services.config.max_size is not None:
        headers["Tus-Max-Size"] = str(services.config.max_size)
    return web.Response(status=204, headers=headers)


async def _owned_record(services: Services, user: str, upload_id: str) -> UploadRecord:
    """The caller's upload; another user's upload is as unknown as a missing one."""
    record = await services.store.get(upload_id) if is_upload_id(upload_id) else None
    if record is None or record.owner != user:
        raise NotFound(f"no upload {upload_id!r}")
    return record


@contextlib.asynccontextmanager
async def locked_upload(
    services: Services, user: str, upload_id: str
) -> AsyncIterator[tuple[UploadLock, UploadRecord]]:
    """Hold the upload's lock and yield its committed record, read under the lock."""
    await _owned_record(services, user, upload_id)
    lock = await acquire_lock(services.redis, upload_id, services.config.lock)
    try:
        record = await _owned_record(services, user, upload_id)
        if record.status is UploadStatus.FINALIZING:
            # A finalize interrupted by a crash: complete it before anything else.
            record = await finalize(
                services.redis, services.store, lock, record, services.layout, None,
                services.config.lock,
            )  # fmt: skip
        yield lock, record
    finally:
        await asyncio.shield(lock.release())


async def head(request: web.Request) -> web.Response:
    check_tus_resumable(request.headers.get("Tus-Resumable"))
    services = services_of(request)
    user = await services.auth.user_for(request)
    async with locked_upload(services, user, request.match_info["upload_id"]) as (_, record):
        headers = tus_headers(record)
        if record.metadata:
            headers["Upload-Metadata"] = record.metadata
        return web.Response(status=200, headers=headers)


async def create(request: web.Request) -> web.Response:
    check_tus_resumable(request.headers.get("Tus-Resumable"))
    services = services_of(request)
    config = services.config
    user = await services.auth.user_for(request)
    length = parse_creation_length(
        request.headers.get("Upload-Length"), request.headers.get("Upload-Defer-Length")
    )
    if length is not None and config.max_size is not None and length > config.max_size:
        raise PayloadTooLarge(f"Upload-Length {length} exceeds the maximum of {config.max_size}")
    raw_metadata = request.headers.get("Upload-Metadata", "")
    destination = upload_destination(decode_metadata(raw_metadata))
    staged = services.layout.staged_path(user, destination)
    has_body = _has_body(request)
    if has_body:
        check_patch_content_type(request.headers.get("Content-Type"))
    if await asyncio.to_thread(staged.is_dir):
        raise BadRequest(f"destination {str(destination)!r} is an existing directory")

    now = time.time()
    record = UploadRecord(
        id=new_upload_id(),
        owner=user,
        length=length,
        offset=0,
        metadata=raw_metadata,
        destination=str(destination),
        created=now,
        updated=now,
        expires=now + config.expire_after,
    )
    stream = StreamState.fresh(config.digest_names)
    record.scan_state = stream.scanner.state()
    record.digest_states = {name: d.state() or b"" for name, d in stream.digests.items()}
    await asyncio.to_thread(ensure_dir, services.layout.user_home(user))
    await asyncio.to_thread(create_partial, partial_path(services.layout.upload_dir, record.id))
    await services.store.create(record)

    headers = {"Location": upload_url(request, record.id)}
    if has_body or length == 0:
        lock = await acquire_lock(services.redis, record.id, config.lock)
        try:
            stream = None
            if has_body:
                record, _, stream = await _receive_body(request, services, lock, record)
            if record.is_full:
                record = await _finalize_now(services, lock, record, stream)
        finally:
            await asyncio.shield(lock.release())
        headers["Upload-Offset"] = str(record.offset)
    return web.Response(status=201, headers=headers)


async def patch(request: web.Request) -> web.Response:
    check_tus_resumable(request.headers.get("Tus-Resumable"))
    check_patch_content_type(request.headers.get("Content-Type"))
    client_offset = parse_offset(request.headers.get("Upload-Offset"))
    new_length = request.headers.get("Upload-Length")
    services = services_of(request)
    user = await services.auth.user_for(request)
    async with locked_upload(services, user, request.match_info["upload_id"]) as (lock, record):
        if client_offset != record.offset:
            raise Conflict(
                f"Upload-Offset {client_offset} does not match the upload's offset {record.offset}"
            )
        if new_length is not None:
            record = await _declare_length(services, lock, record, parse_length(new_length))
        end = BodyEnd.COMPLETE
        if record.status is UploadStatus.PARTIAL:
            record, end, stream = await _receive_body(request, services, lock, record)
            if record.is_full:
                record = await _finalize_now(services, lock, record, stream)
        elif _declared_body_size(request):
            raise PayloadTooLarge(f"upload {record.id} is already complete")
        if end is BodyEnd.TOO_LARGE:
            raise PayloadTooLarge(f"the body runs past Upload-Length {record.length}")
        if end is BodyEnd.RELEASED:
            raise Locked(f"another request took over upload {record.id} at {record.offset}")
        if end is BodyEnd.SHUTDOWN:
            raise ServiceUnavailable(
                f"server restarting; upload {record.id} kept at {record.offset}", retry_after=2
            )
        return web.Response(status=204, headers={"Upload-Offset": str(record.offset)})


async def delete(request: web.Request) -> web.Response:
    check_tus_resumable(request.headers.get("Tus-Resumable"))
    services = services_of(request)
    user = await services.auth.user_for(request)
    async with locked_upload(services, user, request.match_info["upload_id"]) as (lock, record):
        await services.store.delete(lock)
        await asyncio.to_thread(remove_partial, partial_path(services.layout.upload_dir, record.id))
    return web.Response(status=204)


async def post_with_override(request: web.Request) -> web.Response:
    """POST /files/{id} with X-HTTP-Method-Override, for clients behind method-limited proxies."""
    method = parse_method_override(request.method, request.headers.get("X-HTTP-Method-Override"))
    handler = {"PATCH": patch, "DELETE": delete, "HEAD": head}.get(method)
    if handler is None:
        raise BadRequest("POST to an upload URL needs X-HTTP-Method-Override")
    return await handler(request)


def upload_url(request: web.Request, upload_id: str) -> str:
    base = services_of(request).config.base_path
    return str(request.url.with_path(f"{base}{upload_id}").with_query(None))


def _declared_body_size(request: web.Request) -> int | None:
    if request.content_length is not None:
        return request.content_length
    return None if not request.body_exists else -1  # chunked: size unknown


def _has_body(request: web.Request) -> bool:
    size = _declared_body_size(request)
    return size is not None and size != 0


async def _declare_length(
    services: Services, lock: UploadLock, record: UploadRecord, length: int
) -> UploadRecord:
    """creation-defer-length: the length may be set once, and not below the offset."""
    if record.length is not None:
        if length != record.length:
            raise BadRequest(f"Upload-Length is already {record.length}, cannot change it")
        return record
    if length < record.offset:
        raise BadRequest(f"Upload-Length {length} is below the upload's offset {record.offset}")
    max_size = services.config.max_size
    if max_size is not None and length > max_size:
        raise PayloadTooLarge(f"Upload-Length {length} exceeds the maximum of {max_size}")
    await services.store.update(lock, {"length": str(length).encode()})
    record.length = length
    return record


async def _receive_body(
    request: web.Request, services: Services, lock: UploadLock, record: UploadRecord
) -> tuple[UploadRecord, BodyEnd, StreamState]:
    """Stream the body at the committed offset and commit what arrives."""
    config = services.config
    limit = record.length if record.length is not None else config.max_size
    declared = _declared_body_size(request)
    if (
        limit is not None
        and declared is not None
        and declared > 0
        and (record.offset + declared > limit)
    ):
        raise PayloadTooLarge(
            f"a body of {declared} bytes at offset {record.offset} runs past {limit}"
        )
    path = partial_path(services.layout.upload_dir, record.id)
    writer = await asyncio.to_thread(_open_writer, record, config.digest_names, path)
    try:
        pump = BodyPump(
            request,
            writer,
            lock,
            services.store,
            PumpSettings(config.block_size, config.checkpoint_bytes, config.network_timeout),
            limit,
            services.stopping,
        )
        try:
            result = await pump.run()
        except LockLost as error:
            raise Locked(f"{error}; resume from HEAD") from None
        except (StaleOffset, UploadVanished) as error:
            raise NotFound(str(error)) from None
        record.offset = result.committed_offset
        return record, result.end, writer.stream
    finally:
        await asyncio.to_thread(writer.close)


def _open_writer(record: UploadRecord, digest_names: list[str], path: Path) -> PartialWriter:
    stream = StreamState.restore(record, digest_names, path)
    return PartialWriter.open(path, record.offset, stream)


async def _finalize_now(
    services: Services, lock: UploadLock, record: UploadRecord, stream: StreamState | None
) -> UploadRecord:
    if stream is None:
        path = partial_path(services.layout.upload_dir, record.id)
        stream = await asyncio.to_thread(
            StreamState.restore, record, services.config.digest_names, path
        )
    return await finalize(
        services.redis, services.store, lock, record, services.layout, stream,
        services.config.lock,
    )  # fmt: skip
