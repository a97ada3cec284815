"""The tus 1.0.0 endpoint: OPTIONS, POST (creation), HEAD, PATCH, DELETE.

Each handler reads like the protocol: check the headers, find the caller's upload,
take its lock, act on the committed state in Redis, answer.
"""

from __future__ import annotations

import asyncio
from pathlib import PurePosixPath
from typing import Any

from aiohttp import web

from protocol import extensions
from protocol.dates import format_http_date
from protocol.destination import upload_destination
from protocol.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    Locked,
    PayloadTooLarge,
    ServiceUnavailable,
)
from protocol.forwarded import public_origin
from protocol.headers import (
    SUPPORTED_CHECKSUMS,
    TUS_VERSION,
    check_patch_content_type,
    check_tus_resumable,
    parse_concat,
    parse_creation_length,
    parse_length,
    parse_method_override,
    parse_offset,
)
from protocol.metadata import decode_metadata
from store.locks import acquire_lock
from store.partial import StreamState, create_partial, partial_path, remove_partial
from store.paths import ensure_dir
from store.record import UploadRecord, UploadStatus, finals_key, is_upload_id

from .body_pump import BodyEnd
from .concatenation import create_final
from .metrics import LOCK_RELEASES
from .ownership import owned, refuse_expired
from .request_log import UPLOAD_ID
from .services import Services, authenticated_user, services_of
from .upload_ops import (
    complete_upload,
    declare_length,
    declared_body_size,
    expected_checksum,
    has_body,
    locked_upload,
    receive_body,
)

SUPPORTED_EXTENSIONS = (
    extensions.CREATION,
    extensions.CREATION_WITH_UPLOAD,
    extensions.CREATION_DEFER_LENGTH,
    extensions.TERMINATION,
    extensions.CHECKSUM,
    extensions.EXPIRATION,
    extensions.CONCATENATION,
    extensions.CONCATENATION_UNFINISHED,
)


async def options(request: web.Request) -> web.Response:
    services = services_of(request)
    headers = {
        "Tus-Resumable": TUS_VERSION,
        "Tus-Version": TUS_VERSION,
        "Tus-Extension": extensions.advertised(SUPPORTED_EXTENSIONS),
        "Tus-Checksum-Algorithm": ",".join(SUPPORTED_CHECKSUMS),
    }
    if services.config.max_size is not None:
        headers["Tus-Max-Size"] = str(services.config.max_size)
    return web.Response(status=204, headers=headers)


async def create(request: web.Request) -> web.Response:
    check_tus_resumable(request.headers.get("Tus-Resumable"))
    services = services_of(request)
    config = services.config
    user = await authenticated_user(request)
    concat_header = request.headers.get("Upload-Concat")
    concat = parse_concat(concat_header) if concat_header is not None else None
    length: int | None = None
    if concat is None or concat.kind == "partial":
        # A final upload's length is the sum of its parts.
        length = parse_creation_length(
            request.headers.get("Upload-Length"), request.headers.get("Upload-Defer-Length")
        )
        if length is not None and config.max_size is not None and length > config.max_size:
            raise PayloadTooLarge(
                f"Upload-Length {length} exceeds the maximum of {config.max_size}"
            )
    raw_metadata = request.headers.get("Upload-Metadata", "")
    metadata = decode_metadata(raw_metadata)
    # A partial upload is never staged by itself: it needs no destination.
    needs_destination = concat is None or concat.kind == "final"
    destination = upload_destination(metadata) if needs_destination else None
    if destination is not None:
        staged = services.layout.staged_path(user, destination)
        if await asyncio.to_thread(staged.is_dir):
            raise BadRequest(f"destination {str(destination)!r} is an existing directory")
        await asyncio.to_thread(ensure_dir, services.layout.user_home(user))

    if concat is not None and concat.kind == "final":
        if has_body(request):
            raise Forbidden("a final upload (Upload-Concat: final) takes no body")
        assert concat_header is not None and destination is not None
        await services.hooks.pre_create(
            hook_payload(user, destination, None, metadata, concat_header)
        )
        record = await create_final(
            services, user, concat, concat_header.strip(), str(destination), raw_metadata
        )
        return web.Response(status=201, headers=_creation_headers(request, record))

    with_body = has_body(request)
    checksum = None
    if with_body:
        check_patch_content_type(request.headers.get("Content-Type"))
        checksum = expected_checksum(request)

    await services.hooks.pre_create(
        hook_payload(user, destination, length, metadata, concat_header)
    )
    record = UploadRecord.new(
        owner=user,
        length=length,
        metadata=raw_metadata,
        destination=str(destination) if destination is not None else "",
        expire_after=config.expire_after,
        concat="partial" if concat is not None else "",
    )
    stream = StreamState.fresh(config.digest_names)
    record.scan_state = stream.scanner.state()
    record.digest_states = {name: d.state() or b"" for name, d in stream.digests.items()}
    partial = partial_path(services.layout.upload_dir, record.id)
    await asyncio.to_thread(create_partial, partial)
    try:
        await services.store.create(record)
    except BaseException:
        # No record will ever point at it: the janitor would never find it.
        await asyncio.to_thread(remove_partial, partial)
        raise
    request[UPLOAD_ID] = record.id
    await services.events.emit("created", record)

    if with_body or length == 0:
        lock = await acquire_lock(services.redis, record.id, config.lock)
        try:
            received: StreamState | None = None
            if with_body:
                record, _, received = await receive_body(request, services, lock, record, checksum)
            if record.is_full:
                record = await complete_upload(services, lock, record, received)
        finally:
            await asyncio.shield(lock.release())
    headers = _creation_headers(request, record)
    if with_body:
        headers["Upload-Offset"] = str(record.offset)
    return web.Response(status=201, headers=headers)


async def head(request: web.Request) -> web.Response:
    check_tus_resumable(request.headers.get("Tus-Resumable"))
    services = services_of(request)
    user = await authenticated_user(request)
    upload_id = request.match_info["upload_id"]
    record = await _quiet_record(services, user, upload_id)
    if record is not None:
        return _head_response(record)
    # Someone holds the lock (maybe a PATCH whose client vanished): ask it to commit and
    # let go, so that the offset answered includes every byte it received.
    async with locked_upload(services, user, upload_id) as (_, record):
        return _head_response(record)


async def _quiet_record(services: Services, user: str, upload_id: str) -> UploadRecord | None:
    """The record when nobody holds the upload's lock and it needs no care; else None."""
    if not is_upload_id(upload_id):
        owned(None, user, upload_id)  # 404, as for any unknown upload
    locked, found = await services.store.get_unless_locked(upload_id)
    if locked:
        return None
    record = owned(found, user, upload_id)
    refuse_expired(record)
    return None if record.status is UploadStatus.FINALIZING else record


def _head_response(record: UploadRecord) -> web.Response:
    headers = {"Cache-Control": "no-store"}
    # A final upload shows no offset until its concatenation has finished.
    if not record.is_final_concat or record.status is UploadStatus.COMPLETE:
        headers["Upload-Offset"] = str(record.offset)
    if record.length is None:
        headers["Upload-Defer-Length"] = "1"
    else:
        headers["Upload-Length"] = str(record.length)
    if record.metadata:
        headers["Upload-Metadata"] = record.metadata
    if record.concat:
        headers["Upload-Concat"] = record.concat
    headers.update(_expiry_header(record))
    return web.Response(status=200, headers=headers)


async def patch(request: web.Request) -> web.Response:
    check_tus_resumable(request.headers.get("Tus-Resumable"))
    check_patch_content_type(request.headers.get("Content-Type"))
    client_offset = parse_offset(request.headers.get("Upload-Offset"))
    new_length = request.headers.get("Upload-Length")
    checksum = expected_checksum(request)
    services = services_of(request)
    user = await authenticated_user(request)
    async with locked_upload(services, user, request.match_info["upload_id"]) as (lock, record):
        if record.is_final_concat:
            raise Forbidden(f"upload {record.id} is a final upload: it takes no PATCH")
        if client_offset != record.offset:
            raise Conflict(
                f"Upload-Offset {client_offset} does not match the upload's offset {record.offset}"
            )
        if new_length is not None:
            record = await declare_length(services, lock, record, parse_length(new_length))
        end = BodyEnd.COMPLETE
        if record.status is UploadStatus.PARTIAL:
            record, end, stream = await receive_body(request, services, lock, record, checksum)
            if record.is_full:
                record = await complete_upload(services, lock, record, stream)
        elif declared_body_size(request):
            raise PayloadTooLarge(f"upload {record.id} is already complete")
        if end is BodyEnd.TOO_LARGE:
            raise PayloadTooLarge(f"the body runs past Upload-Length {record.length}")
        if end is BodyEnd.RELEASED:
            LOCK_RELEASES.inc()
            raise Locked(f"another request took over upload {record.id} at {record.offset}")
        if end is BodyEnd.SHUTDOWN:
            raise ServiceUnavailable(
                f"server restarting; upload {record.id} kept at {record.offset}", retry_after=2
            )
        headers = {"Upload-Offset": str(record.offset), **_expiry_header(record)}
        return web.Response(status=204, headers=headers)


async def delete(request: web.Request) -> web.Response:
    check_tus_resumable(request.headers.get("Tus-Resumable"))
    services = services_of(request)
    user = await authenticated_user(request)
    upload_id = request.match_info["upload_id"]
    async with locked_upload(services, user, upload_id, allow_expired=True) as (lock, record):
        await services.store.delete(lock)
        await services.redis.delete(finals_key(record.id))
        await services.events.emit("terminated", record)
        await asyncio.to_thread(remove_partial, partial_path(services.layout.upload_dir, record.id))
    return web.Response(status=204)


async def post_with_override(request: web.Request) -> web.Response:
    """POST /files/{id} with X-HTTP-Method-Override, for clients behind method-limited proxies."""
    method = parse_method_override(request.method, request.headers.get("X-HTTP-Method-Override"))
    handler = {"PATCH": patch, "DELETE": delete, "HEAD": head}.get(method)
    if handler is None:
        raise BadRequest("POST to an upload URL needs X-HTTP-Method-Override")
    return await handler(request)


def hook_payload(
    user: str,
    destination: PurePosixPath | None,
    length: int | None,
    metadata: dict[str, bytes],
    concat: str | None,
) -> dict[str, Any]:
    """What the pre-create hook is told of an upload about to be created."""
    return {
        "user": user,
        "filename": destination.name if destination is not None else None,
        "destination": str(destination) if destination is not None else None,
        "length": length,
        "metadata": {k: v.decode("utf-8", "replace") for k, v in metadata.items()},
        "concat": concat,
    }


def upload_url(request: web.Request, services: Services, upload_id: str) -> str:
    """Relative unless behind a proxy: clients resolve it against the URL they used."""
    path = f"{services.config.base_path}{upload_id}"
    if not services.config.behind_proxy:
        return path
    origin = public_origin(request.headers)
    scheme = origin.scheme or request.scheme
    host = origin.host or request.host
    return f"{scheme}://{host}{path}"


def _creation_headers(request: web.Request, record: UploadRecord) -> dict[str, str]:
    services = services_of(request)
    return {"Location": upload_url(request, services, record.id), **_expiry_header(record)}


def _expiry_header(record: UploadRecord) -> dict[str, str]:
    if record.expires is None or record.status is not UploadStatus.PARTIAL:
        return {}
    return {"Upload-Expires": format_http_date(record.expires)}
