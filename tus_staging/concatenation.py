"""The concatenation and concatenation-unfinished extensions.

Partial uploads (``Upload-Concat: partial``) receive bytes like any upload but are never
staged on their own. A final upload (``Upload-Concat: final;URL URL…``) names them in
order; once every partial is complete — at the final's creation, or later when the last
partial completes — their bytes are copied in order into the final's partial file in one
pass that also computes the digests and the scanner state, and the final is finalized
into staging like any upload.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from protocol.errors import BadRequest, Locked, PayloadTooLarge
from protocol.headers import Concat
from store.locks import LockSettings, UploadLock, acquire_lock, renew_between
from store.partial import (
    PartialWriter,
    StreamState,
    create_partial,
    partial_path,
)
from store.record import (
    UploadRecord,
    UploadStatus,
    finals_key,
    is_upload_id,
)

from .finishing import finish
from .ownership import owned_record
from .services import Services

COPY_BLOCK = 4 * 1024 * 1024


def part_ids(concat: Concat, base_path: str) -> list[str]:
    """Upload ids from the final's part URLs (absolute or path-only)."""
    ids = []
    for part in concat.parts:
        path = urlsplit(part).path
        upload_id = path.removeprefix(base_path)
        if path == upload_id or not is_upload_id(upload_id):
            raise BadRequest(f"Upload-Concat part {part!r} is not an upload of this server")
        ids.append(upload_id)
    return ids


async def create_final(
    services: Services,
    user: str,
    concat: Concat,
    header: str,
    destination: str,
    raw_metadata: str,
) -> UploadRecord:
    ids = part_ids(concat, services.config.base_path)
    partials = [await owned_record(services, user, upload_id) for upload_id in ids]
    for partial in partials:
        if not partial.is_partial_concat:
            raise BadRequest(f"upload {partial.id} is not a partial upload (Upload-Concat)")
        if partial.length is None:
            raise BadRequest(f"partial upload {partial.id} has no Upload-Length yet")
    length = sum(partial.length or 0 for partial in partials)
    max_size = services.config.max_size
    if max_size is not None and length > max_size:
        raise PayloadTooLarge(f"the concatenation of {length} bytes exceeds {max_size}")
    record = UploadRecord.new(
        owner=user,
        length=length,
        metadata=raw_metadata,
        destination=destination,
        expire_after=services.config.expire_after,
        concat=header,
        parts=ids,
    )
    await services.store.create(record)
    await services.events.emit("created", record)
    for upload_id in ids:
        await services.redis.sadd(finals_key(upload_id), record.id)
    await try_concatenate(services, record.id)
    return await services.store.get(record.id) or record


async def partial_completed(
    services: Services, lock: UploadLock, record: UploadRecord
) -> UploadRecord:
    """A partial upload got its last byte: mark it complete and wake the finals waiting."""
    await services.store.update(lock, {"status": UploadStatus.COMPLETE.value.encode()})
    record.status = UploadStatus.COMPLETE
    for raw in await services.redis.smembers(finals_key(record.id)):
        await try_concatenate(services, raw.decode())
    return record


async def try_concatenate(services: Services, final_id: str) -> None:
    """Concatenate ``final_id`` if all its partials are complete and nobody else is on it."""
    quick = LockSettings(ttl=services.config.lock.ttl, wait=0.5)
    try:
        lock = await acquire_lock(services.redis, final_id, quick)
    except Locked:
        return  # another request is concatenating it right now
    try:
        final = await services.store.get(final_id)
        if final is None or final.status is not UploadStatus.PARTIAL:
            return
        partials = [await services.store.get(upload_id) for upload_id in final.parts]
        if not all(p is not None and p.status is UploadStatus.COMPLETE for p in partials):
            return
        stream = await _concatenate(services, lock, final)
        await finish(services, lock, final, stream)
    finally:
        await asyncio.shield(lock.release())


async def _concatenate(services: Services, lock: UploadLock, final: UploadRecord) -> StreamState:
    upload_dir = services.layout.upload_dir
    target = partial_path(upload_dir, final.id)
    await asyncio.to_thread(_ensure_empty, target)
    writer = await asyncio.to_thread(
        PartialWriter.open, target, 0, StreamState.fresh(services.config.digest_names)
    )
    try:
        for upload_id in final.parts:
            source = await asyncio.to_thread(open, partial_path(upload_dir, upload_id), "rb")
            try:
                # One executor hop per block; the lock is renewed between blocks.
                await renew_between(lock, _copy_step(source.read, writer))
            finally:
                await asyncio.to_thread(source.close)
        await asyncio.to_thread(writer.sync)
    finally:
        await asyncio.to_thread(writer.close)
    fields = writer.stream.redis_fields()
    fields["offset"] = str(writer.offset).encode()
    await services.store.update(lock, fields, expect_offset=0)
    final.offset = writer.offset
    return writer.stream


def _copy_step(read: Callable[[int], bytes], writer: PartialWriter) -> Callable[[], int]:
    def step() -> int:
        block = read(COPY_BLOCK)
        if block:
            writer.absorb([block])
        return len(block)

    return step


def _ensure_empty(path: Path) -> None:
    # A concatenation interrupted by a crash starts over from an empty file.
    if path.exists():
        path.unlink()
    create_partial(path)
