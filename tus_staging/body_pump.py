"""The PATCH hot path: stream a request body into the partial file.

Bytes arrive in the socket's chunk sizes; they are gathered into blocks of
``block_size`` and each block makes exactly one executor hop that writes it at its
offset and feeds the digests and the scanner (hashing releases the GIL). While one
block is in the executor, the next one is read from the network: at most two blocks
are in memory, whatever the upload's size.

Commits (fsync, then offset + digest and scanner states to Redis, guarded by the lock
token) happen every ``checkpoint_bytes`` and when the body ends for any reason —
end of body, client gone, client silent for ``network_timeout``, another request
asking for the lock. A lost lock stops the writer before its next block, uncommitted.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import sys
import time
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from enum import Enum

import aiohttp
from aiohttp import web

from protocol.errors import ChecksumMismatch
from store.checksums import new_checksum
from store.crash_points import crash_point
from store.locks import UploadLock
from store.partial import PartialWriter
from store.state_store import StateStore

from .metrics import BYTES_RECEIVED
from .request_log import BYTES


class BodyEnd(Enum):
    COMPLETE = "complete"  # the body ended normally
    DISCONNECTED = "disconnected"  # the client went away mid-body
    TIMED_OUT = "timed out"  # no byte for network_timeout seconds
    RELEASED = "released"  # another request asked for the lock
    TOO_LARGE = "too large"  # the body ran past the upload's length
    SHUTDOWN = "shutdown"  # the worker is stopping


@dataclass
class PumpSettings:
    block_size: int
    checkpoint_bytes: int
    network_timeout: float
    expire_after: float  # each commit moves the upload's expiry this far ahead


@dataclass(frozen=True)
class ExpectedChecksum:
    algorithm: str
    digest: bytes


@dataclass
class PumpResult:
    end: BodyEnd
    committed_offset: int


class Block:
    """Socket chunks gathered for one executor hop, kept as they came: no copy into one
    buffer (the writer hands the list to pwritev and each chunk to the digests)."""

    __slots__ = ("chunks", "size")

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.size = 0

    def add(self, chunk: bytes) -> None:
        if chunk:
            self.chunks.append(chunk)
            self.size += len(chunk)


def salvage_buffered(content: aiohttp.StreamReader) -> bytes:
    """The bytes that reached the server before its client vanished.

    On a disconnect aiohttp marks the body as failed, and from then on its reads raise
    before returning what is already buffered. Those bytes were received (the kernel
    acknowledged them) and must be kept; lifting the error for one read_nowait() is the
    only way to reach them (aiohttp 3.9-3.14; tests/test_interrupted_patch.py guards it).
    """
    error = content.exception()
    content._exception = None
    try:
        return content.read_nowait()
    except Exception:
        return b""
    finally:
        content._exception = error


class BodyPump:
    def __init__(
        self,
        request: web.Request,
        writer: PartialWriter,
        lock: UploadLock,
        store: StateStore,
        settings: PumpSettings,
        limit: int | None,
        stopping: asyncio.Event,
        checksum: ExpectedChecksum | None = None,
        executor: Executor | None = None,
    ):
        self.request = request
        self.writer = writer
        self.lock = lock
        self.store = store
        self.settings = settings
        self.limit = limit  # highest offset the body may reach (None: unbounded)
        self.stopping = stopping
        self.checksum = checksum
        self.executor = executor  # where blocks are written and hashed (None: the default)
        if checksum is not None:
            # Nothing of a checksummed body may be committed before the whole body is checked.
            writer.body_checksum = new_checksum(checksum.algorithm)
            self.settings = replace(settings, checkpoint_bytes=sys.maxsize)
        self.committed = writer.offset
        self.expires: float | None = None  # set by each commit
        self._in_flight: asyncio.Future[None] | None = None
        self._checkpoint: asyncio.Future[None] | None = None  # a commit overlapping the stream
        self._loop = asyncio.get_running_loop()

    async def run(self) -> PumpResult:
        """Stream, commit and report why the body ended. Errors (OSError, LockLost) propagate
        after the last good state has been committed where that is still allowed."""
        try:
            end = await self._stream()
        except BaseException:
            await self._settle_after_error()
            raise
        await self._drain()
        if self.checksum is not None and not self._checksum_verified(end):
            await self._loop.run_in_executor(None, self.writer.discard_to, self.committed)
            if end is BodyEnd.COMPLETE:
                raise ChecksumMismatch(
                    f"body does not match Upload-Checksum {self.checksum.algorithm}; "
                    f"chunk discarded, offset stays {self.committed}"
                )
            return PumpResult(end, self.committed)
        await self.commit()
        return PumpResult(end, self.committed)

    def _checksum_verified(self, end: BodyEnd) -> bool:
        # A body that did not arrive whole cannot be verified, so none of it is kept.
        checksum = self.writer.body_checksum
        assert self.checksum is not None and checksum is not None
        return end is BodyEnd.COMPLETE and hmac.compare_digest(
            checksum.digest(), self.checksum.digest
        )

    async def _stream(self) -> BodyEnd:
        content = self.request.content
        block = Block()
        received = self.writer.offset  # offset the body has reached, including the buffer
        last_byte_at = time.monotonic()
        while True:
            try:
                async with asyncio.timeout(self.lock.settings.renew_every):
                    # One buffered chunk at a time: readany() would join all buffered
                    # chunks into a new bytes object (a copy of the whole stream).
                    chunk, at_http_chunk_end = await content.readchunk()
                if not chunk and at_http_chunk_end and not content.is_eof():
                    continue  # a chunked-encoding boundary, not the end of the body
            except TimeoutError:
                # A quiet client: keep the lock alive and listen for release requests.
                await self.lock.renew()
                if (end := self._asked_to_stop()) is not None:
                    await self._push(block)
                    return end
                if time.monotonic() - last_byte_at >= self.settings.network_timeout:
                    await self._push(block)
                    return BodyEnd.TIMED_OUT
                if block.size and self.checksum is None:
                    # Quiet time is free time: make what arrived durable now.
                    await self._push(block)
                    block = Block()
                    await self._drain()
                    await self.commit()
                continue
            except (aiohttp.ClientPayloadError, ConnectionError, asyncio.IncompleteReadError):
                rest = salvage_buffered(content)
                if self.limit is not None:
                    rest = rest[: self.limit - received]
                block.add(rest)
                await self._push(block)
                return BodyEnd.DISCONNECTED
            if not chunk:
                await self._push(block)
                return BodyEnd.COMPLETE
            last_byte_at = time.monotonic()
            if self.limit is not None and received + len(chunk) > self.limit:
                # Keep what fits; the rest is refused (413) and never written.
                block.add(chunk[: self.limit - received])
                await self._push(block)
                return BodyEnd.TOO_LARGE
            received += len(chunk)
            block.add(chunk)
            if block.size >= self.settings.block_size:
                await self._push(block)
                block = Block()
                if (end := self._asked_to_stop()) is not None:
                    return end

    def _asked_to_stop(self) -> BodyEnd | None:
        if self.stopping.is_set():
            return BodyEnd.SHUTDOWN
        if self.lock.release_requested:
            return BodyEnd.RELEASED
        return None

    async def _push(self, block: Block) -> None:
        """Hand one block to the executor once the previous one is done."""
        if not block.size:
            return
        await self._drain()
        if self._checkpoint is not None and self._checkpoint.done():
            await self._settle_checkpoint()  # surfaces a failed checkpoint (lost lock, …)
        self.lock.check_valid()  # a writer that outlived its lock stops here
        if self.lock.renewal_due():
            await self.lock.renew()
        in_flight = self._loop.run_in_executor(self.executor, self.writer.absorb, block.chunks)
        in_flight.add_done_callback(self._after_block)
        self._in_flight = in_flight

    def _after_block(self, done: asyncio.Future[None]) -> None:
        # Runs on the loop as the block completes, before the next block can be handed
        # out: the writer's offset and states are consistent here, so they are the
        # checkpoint's snapshot. Its fsync then overlaps the next blocks.
        if not done.cancelled() and done.exception() is None:
            self._maybe_checkpoint()

    def _maybe_checkpoint(self) -> None:
        """Start a checkpoint if one is due and none is running (a failed one is kept
        for _push to raise). Call only when no block is in flight or one just completed."""
        running = self._checkpoint
        if running is not None:
            if not running.done() or running.cancelled() or running.exception() is not None:
                return
            self._checkpoint = None
        if self.writer.offset - self.committed >= self.settings.checkpoint_bytes:
            checkpoint = asyncio.ensure_future(self._commit_snapshot(self._snapshot()))
            checkpoint.add_done_callback(self._after_checkpoint)
            self._checkpoint = checkpoint

    def _after_checkpoint(self, done: asyncio.Future[None]) -> None:
        # Bytes that arrived during the fsync may already make the next checkpoint due; if
        # no block is in flight nobody else would start it until the client sends more.
        # (Not when commit() has taken this checkpoint over: it commits the rest itself.)
        if self._checkpoint is done and (self._in_flight is None or self._in_flight.done()):
            self._maybe_checkpoint()

    async def _drain(self) -> None:
        if self._in_flight is not None:
            in_flight, self._in_flight = self._in_flight, None
            await in_flight

    async def _settle_checkpoint(self) -> None:
        if self._checkpoint is not None:
            checkpoint, self._checkpoint = self._checkpoint, None
            await checkpoint

    def _snapshot(self) -> tuple[int, dict[str, bytes]]:
        return self.writer.offset, self.writer.stream.redis_fields()

    async def commit(self) -> None:
        """Commit everything absorbed so far (call with no block in flight)."""
        await self._settle_checkpoint()
        if self.writer.offset != self.committed:
            await self._commit_snapshot(self._snapshot())

    async def _commit_snapshot(self, snapshot: tuple[int, dict[str, bytes]]) -> None:
        """fsync, then move the committed offset in Redis (only while the lock is ours)."""
        offset, fields = snapshot
        # The fsync covers at least every byte up to ``offset`` (written before it began).
        await self._loop.run_in_executor(None, self.writer.sync, offset)
        crash_point("commit-after-fsync")
        now = time.time()
        expires = now + self.settings.expire_after
        fields["offset"] = str(offset).encode()
        fields["updated"] = repr(now).encode()
        fields["expires"] = repr(expires).encode()
        await self.store.update(self.lock, fields, expect_offset=self.committed)
        BYTES_RECEIVED.inc(offset - self.committed)
        self.request[BYTES] = self.request.get(BYTES, 0) + offset - self.committed
        self.committed = offset
        self.expires = expires
        await self.store.set_expiry(self.lock.upload_id, expires)

    async def _settle_after_error(self) -> None:
        """After a failed block (disk full, lost lock) keep what was written before it."""
        # The block that failed is excluded from the writer's offset.
        with contextlib.suppress(Exception):
            await self._drain()
        if self.checksum is not None:
            return  # an unverified checksummed body is never committed
        # Lock lost or disk failing: then the previous commit stands.
        with contextlib.suppress(Exception):
            await self._settle_checkpoint()
        with contextlib.suppress(Exception):
            await self.commit()
