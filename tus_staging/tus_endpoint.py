"""The tus 1.0.0 endpoint: OPTIONS, POST (creation), HEAD, PATCH, DELETE.

Each handler reads like the protocol: check the headers, open the caller's upload (the
store takes its lock and reads its committed state), act through the session, answer.
"""

from __future__ import annotations

from email.utils import formatdate
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from protocol import extensions
from protocol.destination import upload_destination
from protocol.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    PayloadTooLarge,
)
from protocol.headers import (
    SUPPORTED_CHECKSUMS,
    TUS_VERSION,
    Concat,
    check_patch_content_type,
    check_tus_resumable,
    overridden,
    parse_concat,
    parse_creation_length,
    parse_length,
    parse_offset,
)
from protocol.lifecycle import UploadKind, UploadState
from protocol.metadata import decode_metadata
from store.record import UploadRecord, is_upload_id

from .allowed_hosts import requested_origin
from .body_pump import BodyEnd
from .receive import (
    declared_body_size,
    expected_checksum,
    has_body,
    receive_body,
    refuse_cut_body,
)
from .request_log import UPLOAD_ID
from .services import Services, authenticated_user, services_of

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
    user = await authenticated_user(request)
    concat_header = request.headers.get("Upload-Concat")
    concat = parse_concat(concat_header) if concat_header is not None else None
    raw_metadata = request.headers.get("Upload-Metadata", "")
    if concat is not None and concat.kind == "final":
        assert concat_header is not None
        metadata = decode_metadata(raw_metadata)
        return await _create_final(
            request, services, user, concat, concat_header, raw_metadata, metadata
        )

    length = parse_creation_length(
        request.headers.get("Upload-Length"), request.headers.get("Upload-Defer-Length")
    )
    if length is not None:
        services.uploads.check_size(length)
    metadata = decode_metadata(raw_metadata)  # a bad length is refused first
    # A partial upload is never staged by itself: it needs no destination.
    kind = UploadKind.PART if concat is not None else UploadKind.PLAIN
    destination = upload_destination(metadata) if kind is UploadKind.PLAIN else None
    with_body = has_body(request)
    checksum = None
    if with_body:
        check_patch_content_type(request.headers.get("Content-Type"))
        checksum = expected_checksum(request)
    await services.hooks.pre_create(
        hook_payload(user, destination, length, metadata, concat_header)
    )
    record = await services.uploads.create(
        user, length=length, metadata=raw_metadata, destination=destination, kind=kind
    )
    request[UPLOAD_ID] = record.id
    if with_body or length == 0:
        async with services.uploads.session(user, record.id) as session:
            end = BodyEnd.COMPLETE
            if with_body:
                end = await receive_body(request, services, session, checksum)
            if session.record.is_full:
                await session.finish()
            refuse_cut_body(end, session.record)
            record = session.record
    headers = _creation_headers(request, services, record)
    if with_body:
        headers["Upload-Offset"] = str(record.offset)
    return web.Response(status=201, headers=headers)


async def _create_final(
    request: web.Request,
    services: Services,
    user: str,
    concat: Concat,
    header: str,
    raw_metadata: str,
    metadata: dict[str, bytes],
) -> web.Response:
    if has_body(request):
        raise Forbidden("a final upload (Upload-Concat: final) takes no body")
    destination = upload_destination(metadata)
    await services.hooks.pre_create(hook_payload(user, destination, None, metadata, header))
    record = await services.uploads.create_final(
        user,
        part_ids=part_ids(concat, services.config.base_path),
        header=header.strip(),
        destination=destination,
        metadata=raw_metadata,
    )
    request[UPLOAD_ID] = record.id
    return web.Response(status=201, headers=_creation_headers(request, services, record))


def part_ids(concat: Concat, base_path: str) -> list[str]:
    """Upload ids from a final's part URLs (absolute, or paths on this server)."""
    ids = []
    for part in concat.parts:
        path = urlsplit(part).path
        upload_id = path.removeprefix(base_path)
        if path == upload_id or not is_upload_id(upload_id):
            raise BadRequest(f"Upload-Concat part {part!r} is not an upload of this server")
        ids.append(upload_id)
    return ids


async def head(request: web.Request) -> web.Response:
    check_tus_resumable(request.headers.get("Tus-Resumable"))
    services = services_of(request)
    user = await authenticated_user(request)
    record = await services.uploads.current(user, request.match_info["upload_id"])
    return _head_response(record)


def _head_response(record: UploadRecord) -> web.Response:
    headers = {"Cache-Control": "no-store"}
    # A final upload shows no offset until its concatenation has finished.
    if record.kind is not UploadKind.FINAL or record.status is UploadState.COMPLETE:
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
    upload_id = request.match_info["upload_id"]
    async with services.uploads.session(user, upload_id) as session:
        record = session.record
        if record.kind is UploadKind.FINAL:
            raise Forbidden(f"upload {record.id} is a final upload: it takes no PATCH")
        if client_offset != record.offset:
            raise Conflict(
                f"Upload-Offset {client_offset} does not match the upload's offset {record.offset}"
            )
        if new_length is not None:
            await session.declare_length(parse_length(new_length))
        end = BodyEnd.COMPLETE
        if record.status is UploadState.PARTIAL:
            end = await receive_body(request, services, session, checksum)
            if record.is_full:
                await session.finish()
        elif declared_body_size(request):
            raise PayloadTooLarge(f"upload {record.id} is already complete")
        refuse_cut_body(end, record)
        headers = {"Upload-Offset": str(record.offset), **_expiry_header(record)}
        return web.Response(status=204, headers=headers)


async def delete(request: web.Request) -> web.Response:
    check_tus_resumable(request.headers.get("Tus-Resumable"))
    services = services_of(request)
    user = await authenticated_user(request)
    upload_id = request.match_info["upload_id"]
    async with services.uploads.session(user, upload_id, terminating=True) as session:
        await session.terminate()
    return web.Response(status=204)


async def post_with_override(request: web.Request) -> web.Response:
    """POST /files/{id} with X-HTTP-Method-Override, for clients behind method-limited proxies."""
    table = {"PATCH": patch, "DELETE": delete, "HEAD": head}
    return await overridden(request.method, request.headers, table)(request)


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
    scheme, host = requested_origin(request, behind_proxy=True)
    # No Host header (HTTP/1.0) and no forwarded host: the address the request came in on.
    return f"{scheme}://{host or request.host}{path}"


def _creation_headers(
    request: web.Request, services: Services, record: UploadRecord
) -> dict[str, str]:
    return {"Location": upload_url(request, services, record.id), **_expiry_header(record)}


def _expiry_header(record: UploadRecord) -> dict[str, str]:
    if record.expires is None or record.status is not UploadState.PARTIAL:
        return {}
    return {"Upload-Expires": formatdate(record.expires, usegmt=True)}  # an IMF-fixdate
