"""One upload, locked, and everything that can happen to it.

An :class:`UploadSession` is what ``Uploads.session()`` hands to a request that holds the
upload's lock: it declares the length, appends a body (store/appender.py), finishes the
upload — the one finishing verb, whatever the upload's kind — and terminates or expires
it. Every change is checked against the lifecycle table (protocol/lifecycle.py) before it
is made, and every write to Redis is guarded by the lock's token.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from protocol.errors import BadRequest, Conflict
from protocol.lifecycle import UploadEvent, UploadKind, UploadState, next_state
from protocol.paths import twin_key

from .appender import Appender, Snapshot
from .checksums import ExpectedChecksum
from .concatenation import copy_parts
from .crash_points import crash_point
from .finalize import place_file, prepare_result, result_with_mtime
from .keys import destination_lock_name
from .locks import UploadLock, keep_renewed
from .partial import PartialWriter, StreamState, file_identity, partial_path, remove_partial
from .record import UploadRecord

if TYPE_CHECKING:
    from .uploads import Uploads

# What a staged upload's record no longer needs: its digest and scanner states.
SPENT_STATES = ("digest_states", "scan_state")


class UploadSession:
    def __init__(self, uploads: Uploads, record: UploadRecord, lock: UploadLock):
        self.uploads = uploads
        self.record = record
        self.lock = lock
        self._stream: StreamState | None = None  # the states at the committed offset
        # Work for after the lock is released (waking the finals waiting for this part).
        self.after_release: list[Callable[[], Awaitable[None]]] = []

    @property
    def partial_path(self) -> Path:
        return partial_path(self.uploads.layout.upload_dir, self.record.id)

    def check(self, event: UploadEvent) -> UploadState:
        """The state ``event`` leads to; refuses (with the reason) what the table forbids."""
        return next_state(self.record.kind, self.record.status, event)

    async def _write(
        self, *attributes: str, expect_offset: int | None = None, replicated: bool = False
    ) -> None:
        await self.uploads.records.update(
            self.lock, self.record, attributes, expect_offset=expect_offset, replicated=replicated
        )

    # -- bytes ----------------------------------------------------------------------------

    async def declare_length(self, length: int) -> None:
        """creation-defer-length: the length may be set once, and not below the offset."""
        self.check(UploadEvent.DECLARE_LENGTH)
        record = self.record
        if record.length is not None:
            if length != record.length:
                raise BadRequest(f"Upload-Length is already {record.length}, cannot change it")
            return
        if length < record.offset:
            raise BadRequest(f"Upload-Length {length} is below the upload's offset {record.offset}")
        self.uploads.check_size(length)
        await self.uploads.quotas.reserve(record.owner, record.id, length)
        record.length = length
        await self._write("length")

    async def stream_state(self) -> StreamState:
        """The digests and scanner at the committed offset (recomputed from the partial
        file when the saved states cannot be used: the lock is renewed meanwhile)."""
        if self._stream is None:
            names = self.uploads.settings.digest_names
            async with keep_renewed(self.lock):
                self._stream = await asyncio.to_thread(
                    StreamState.restore, self.record, names, self.partial_path
                )
        return self._stream

    @contextlib.asynccontextmanager
    async def appending(
        self,
        checksum: ExpectedChecksum | None = None,
        on_commit: Callable[[int], None] | None = None,
        *,
        renewed: bool = False,
    ) -> AsyncIterator[Appender]:
        """Append a body at the committed offset: the partial file is trimmed to it (bytes
        past it are a crashed or displaced writer's, never ours). ``renewed``: the lock is
        renewed in the background, for a caller that cannot stop reading to renew it
        while its client is silent (a multipart part)."""
        self.check(UploadEvent.APPEND)
        stream = await self.stream_state()
        self._stream = None  # it moves with the writer from here on
        writer = await asyncio.to_thread(
            PartialWriter.open, self.partial_path, self.record.offset, stream
        )
        appender = Appender(
            self,
            writer,
            self.uploads.executor,
            self.uploads.settings.checkpoint_bytes,
            checksum,
            on_commit,
            alone=lambda: self.uploads.bodies_streaming == 1,
        )
        self.uploads.bodies_streaming += 1
        try:
            async with keep_renewed(self.lock) if renewed else contextlib.nullcontext():
                yield appender
        except BaseException:
            await appender.settle_after_error()
            raise
        finally:
            self.uploads.bodies_streaming -= 1
            await asyncio.to_thread(writer.close)
            self.uploads.observers.blocks_written()
        if writer.offset == self.record.offset:  # everything written was committed
            self._stream = writer.stream

    async def commit(
        self,
        snapshot: Snapshot,
        *,
        expect_offset: int,
        event: UploadEvent = UploadEvent.APPEND,
    ) -> None:
        """Move the committed offset (everything below it was fsynced first)."""
        self.check(event)
        record = self.record
        now = self.uploads.clock()
        record.offset, record.digest_states, record.scan_state = snapshot
        record.updated = now
        record.expires = now + self.uploads.settings.expire_after
        await self._write(
            "offset", "digest_states", "scan_state", "updated", "expires",
            expect_offset=expect_offset,
        )  # fmt: skip
        await self.uploads.records.set_expiry(record.id, record.expires)

    # -- the end of an upload ---------------------------------------------------------------

    async def finish(self) -> None:
        """All bytes are in: stage the upload — or, for a concatenation's partial upload,
        mark it complete and wake the finals waiting for it; a final upload first copies
        its partials in. Completes a finalize that a crash interrupted. Idempotent."""
        record = self.record
        if record.status is UploadState.COMPLETE:
            return
        if record.kind is UploadKind.PART:
            await self._complete_part()
            return
        waiting = record.kind is UploadKind.FINAL and record.status is UploadState.PARTIAL
        if waiting and not await self._concatenate():
            return  # a partial upload is still unfinished: its completion wakes us
        self._require_full()
        await self._finalize()

    def _require_full(self) -> None:
        """409 while some of the upload's bytes are missing."""
        record = self.record
        if not record.is_full:
            raise Conflict(f"upload {record.id} has {record.offset} of {record.length} bytes")

    async def _complete_part(self) -> None:
        record = self.record
        self._require_full()
        record.status = self.check(UploadEvent.COMPLETE_PART)
        await self._write("status")  # it keeps its expiry: parts are never staged
        await self.uploads.quotas.release(record.owner, record.id)
        for final_id in await self.uploads.records.finals_waiting_for(record.id):
            self.after_release.append(lambda final_id=final_id: self.uploads.concatenate(final_id))

    async def _concatenate(self) -> bool:
        """Copy the parts in, if all of them are complete; False while some are not."""
        record = self.record
        self.check(UploadEvent.CONCATENATE)
        parts = [await self.uploads.records.get(part_id) for part_id in record.parts]
        if not all(p is not None and p.status is UploadState.COMPLETE for p in parts):
            return False
        upload_dir = self.uploads.layout.upload_dir
        writer = await copy_parts(
            self.lock,
            self.partial_path,
            [partial_path(upload_dir, part_id) for part_id in record.parts],
            self.uploads.settings.digest_names,
        )
        await self.commit(
            (writer.offset, *writer.stream.states()),
            expect_offset=record.offset,
            event=UploadEvent.CONCATENATE,
        )
        self._stream = writer.stream
        # The parts' bytes live in the final now: their files go at once (the spec allows
        # it; each part feeds exactly one final), or at their expiry if busy right now.
        for part_id in record.parts:
            self.after_release.append(lambda part_id=part_id: self.uploads.drop_part(part_id))
        return True

    async def _finalize(self) -> None:
        record = self.record
        uploads = self.uploads
        started = time.monotonic()
        status = self.check(UploadEvent.FINALIZE)
        if record.status is UploadState.PARTIAL:
            stream = await self.stream_state()
            record.result = await asyncio.to_thread(prepare_result, record, uploads.layout, stream)
            record.partial_identity = await asyncio.to_thread(file_identity, self.partial_path)
            record.status = status
            # Indexed first: an entry whose upload is not finalizing is dropped by the janitor.
            await uploads.records.mark_finalizing(record.id, uploads.clock())
            # Not one byte moves before a replica has "finalizing": a failover must never
            # bring back a partial upload whose file has gone to the staging area.
            await self._write(
                "status", "result", "partial_identity",
                expect_offset=record.offset, replicated=True,
            )  # fmt: skip
            crash_point("finalize-before-move")
        else:  # resuming one that a crash interrupted: its first write may not have been
            await self._write("status", replicated=True)
        # Finalizes of one name in one folder take turns (also with a look-alike name), so
        # one upload's move and sidecar never interleave with another's.
        dest_lock = await uploads.lock(
            destination_lock_name(record.owner, twin_key(record.destination)),
            uploads.settings.lock,
        )
        try:
            # A move across filesystems copies the whole file: both locks stay alive.
            async with keep_renewed(self.lock, dest_lock):
                mtime = await asyncio.to_thread(place_file, record, uploads.layout)
        finally:
            await dest_lock.release()
        crash_point("finalize-before-complete")
        record.status = self.check(UploadEvent.PLACE)
        if mtime is not None:  # the record then says what the sidecar says
            record.result = json.dumps(
                result_with_mtime(record.result, mtime), ensure_ascii=False
            ).encode()
        await uploads.records.update(
            self.lock,
            record,
            ["status", "result"],
            drop=SPENT_STATES,
            ttl=uploads.settings.completed_ttl,
        )
        record.digest_states, record.scan_state = {}, b""
        await uploads.records.set_expiry(record.id, None)
        await uploads.records.mark_finalizing(record.id, None)
        await uploads.quotas.release(record.owner, record.id)
        uploads.observers.finalized(time.monotonic() - started)
        await uploads.events.emit("finished", record)

    async def terminate(self) -> None:
        """DELETE: the record, its partial file and its reservation go, in every state."""
        self.check(UploadEvent.TERMINATE)
        await self._remove("terminated")

    async def expire(self) -> bool:
        """Remove the upload if it is past its expiry (False when it is not, any more)."""
        if not self.record.is_expired(self.uploads.clock()):
            return False
        self.check(UploadEvent.EXPIRE)
        await self._remove("expired")
        return True

    async def _remove(self, event: str) -> None:
        record = self.record
        uploads = self.uploads
        await uploads.records.delete(self.lock, record.id)
        await asyncio.to_thread(remove_partial, self.partial_path)
        await uploads.quotas.release(record.owner, record.id)
        await uploads.records.unclaim_parts(record.parts, record.id)
        record.status = UploadState.GONE
        await uploads.events.emit(event, record)
