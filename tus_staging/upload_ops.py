"""Steps the tus handlers share: find and lock an upload, receive a body, complete it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from protocol.errors import BadRequest, Locked, NotFound, PayloadTooLarge
from protocol.headers import parse_checksum
from store.locks import LockLost, UploadLock, acquire_lock, keep_renewed
from store.partial import PartialWriter, StreamState, partial_path
from store.record import UploadRecord, UploadStatus
from store.state_store import StaleOffset, UploadVanished

from .body_pump import BodyEnd, BodyPump, ExpectedChecksum, PumpSettings
from .concatenation import partial_completed
from .finishing import finish
from .metrics import LOCK_WAITS, record_md5_lanes
from .ownership import owned_record, refuse_expired
from .services import Services


@contextlib.asynccontextmanager
async def locked_upload(
    services: Services, user: str, upload_id: str, *, allow_expired: bool = False
) -> AsyncIterator[tuple[UploadLock, UploadRecord]]:
    """Hold the upload's lock and yield its committed record, read under the lock."""
    await owned_record(services, user, upload_id)
    lock = await acquire_lock(services.redis, upload_id, services.config.lock)
    try:
        record = await owned_record(services, user, upload_id)
        if not allow_expired:
            refuse_expired(record)
        if lock.waited:
            LOCK_WAITS.inc()
        if record.status is UploadStatus.FINALIZING:
            # A finalize interrupted by a crash: complete it before anything else.
            record = await finish(services, lock, record, None)
        yield lock, record
    finally:
        await asyncio.shield(lock.release())


def expected_checksum(request: web.Request) -> ExpectedChecksum | None:
    header = request.headers.get("Upload-Checksum")
    if header is None:
        return None
    algorithm, digest = parse_checksum(header)
    return ExpectedChecksum(algorithm, digest)


def declared_body_size(request: web.Request) -> int | None:
    """Content-Length; -1 for a chunked body; None without a body."""
    if request.content_length is not None:
        return request.content_length
    return None if not request.body_exists else -1


def has_body(request: web.Request) -> bool:
    size = declared_body_size(request)
    return size is not None and size != 0


async def declare_length(
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


async def receive_body(
    request: web.Request,
    services: Services,
    lock: UploadLock,
    record: UploadRecord,
    checksum: ExpectedChecksum | None,
) -> tuple[UploadRecord, BodyEnd, StreamState]:
    """Stream the body at the committed offset and commit what arrives."""
    config = services.config
    limit = record.length if record.length is not None else config.max_size
    declared = declared_body_size(request)
    if limit is not None and declared is not None and record.offset + declared > limit:
        raise PayloadTooLarge(
            f"a body of {declared} bytes at offset {record.offset} runs past {limit}"
        )
    path = partial_path(services.layout.upload_dir, record.id)
    stream = await restore_stream(services, lock, record)
    writer = await asyncio.to_thread(PartialWriter.open, path, record.offset, stream)
    try:
        settings = PumpSettings(
            config.block_size, config.checkpoint_bytes, config.network_timeout,
            config.expire_after,
        )  # fmt: skip
        pump = BodyPump(
            request, writer, lock, services.store, settings, limit, services.stopping, checksum,
            services.block_executor,
        )  # fmt: skip
        try:
            result = await pump.run()
        except LockLost as error:
            raise Locked(f"{error}; resume from HEAD") from None
        except (StaleOffset, UploadVanished) as error:
            raise NotFound(str(error)) from None
        record.offset = result.committed_offset
        if pump.expires is not None:
            record.expires = pump.expires
        return record, result.end, writer.stream
    finally:
        record_md5_lanes()
        await asyncio.to_thread(writer.close)


async def restore_stream(services: Services, lock: UploadLock, record: UploadRecord) -> StreamState:
    """The upload's digest and scanner states at its committed offset."""
    path = partial_path(services.layout.upload_dir, record.id)
    async with keep_renewed(lock):  # restoring may recompute digests from the file
        return await asyncio.to_thread(
            StreamState.restore, record, services.config.digest_names, path
        )


async def complete_upload(
    services: Services, lock: UploadLock, record: UploadRecord, stream: StreamState | None
) -> UploadRecord:
    """All bytes are committed: stage the file, or (a concat partial) wait for its final."""
    if record.is_partial_concat:
        return await partial_completed(services, lock, record)
    if stream is None:
        stream = await restore_stream(services, lock, record)
    return await finish(services, lock, record, stream)
