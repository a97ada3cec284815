"""Appending a request body to an upload: one executor hop per block, and checkpoints.

The caller hands over blocks (socket chunks gathered to about a block size, kept as they
came: no copy into one buffer) one at a time. Each block makes one hop to the block
executor, which writes it at its offset, hashes it and scans it (all three without the
GIL where the C extensions are built); meanwhile the caller reads the next block from the
network, so at most two blocks are in memory, whatever the upload's size.

A commit is: fsync the partial file, then move the committed offset and the digest and
scanner states in Redis in one script guarded by the lock token and the offset it
started from. Commits happen every ``checkpoint_bytes`` (the fsync overlapping the next
blocks) and when the body ends for any reason. A writer that lost its lock stops before
its next block, uncommitted.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import TYPE_CHECKING

from protocol.errors import ChecksumMismatch

from .checksums import ExpectedChecksum, new_checksum
from .crash_points import crash_point
from .partial import PartialWriter

if TYPE_CHECKING:
    from .session import UploadSession

Snapshot = tuple[int, dict[str, bytes], bytes]  # offset, digest states, scanner state


class Appender:
    def __init__(
        self,
        session: UploadSession,
        writer: PartialWriter,
        executor: Executor,
        checkpoint_bytes: int,
        checksum: ExpectedChecksum | None = None,
        on_commit: Callable[[int], None] | None = None,
    ):
        self.session = session
        self.lock = session.lock
        self.writer = writer
        self.executor = executor
        self.checkpoint_bytes = checkpoint_bytes
        self.checksum = checksum
        self.on_commit = on_commit  # told how many bytes each commit made durable
        if checksum is not None:
            # Nothing of a checksummed body may be committed before the whole body is checked.
            writer.body_checksum = new_checksum(checksum.algorithm)
            self.checkpoint_bytes = sys.maxsize
        self.committed = writer.offset
        self._in_flight: asyncio.Future[None] | None = None
        self._checkpoint: asyncio.Future[None] | None = None  # a commit overlapping the body
        self._loop = asyncio.get_running_loop()

    @property
    def offset(self) -> int:
        """Bytes written so far (committed or not), in the upload's coordinates."""
        return self.writer.offset

    @property
    def release_requested(self) -> bool:
        """Another request asked for the lock: finish the body and let go."""
        return self.lock.release_requested

    async def append(self, chunks: Sequence[bytes]) -> None:
        """Hand one block over, once the previous one is done."""
        if not chunks:
            return
        await self._drain()
        if self._checkpoint is not None and self._checkpoint.done():
            await self._settle_checkpoint()  # surfaces a failed checkpoint (lost lock, …)
        self.lock.check_valid()  # a writer that outlived its lock stops here
        if self.lock.renewal_due():
            await self.lock.renew()
        in_flight = asyncio.ensure_future(self._write_block(chunks))
        in_flight.add_done_callback(self._after_block)
        self._in_flight = in_flight

    async def _write_block(self, chunks: Sequence[bytes]) -> None:
        await self._hop(functools.partial(self.writer.write, chunks))

    def _hop(self, step: Callable[[], None]) -> asyncio.Future[None]:
        return self._loop.run_in_executor(self.executor, step)

    async def keep_alive(self) -> None:
        """Renew the lock (and learn of release requests) while the client is silent."""
        await self.lock.renew()

    async def commit(self) -> None:
        """Commit everything written so far."""
        await self._drain()
        await self._settle_checkpoint()
        if self.writer.offset != self.committed:
            await self._commit_snapshot(self._snapshot())

    async def end_body(self, *, whole: bool) -> int:
        """The body ended (``whole``: it arrived complete). Verify its checksum if it has
        one — a body that did not arrive whole cannot be verified, so none of it is kept,
        and a whole one that does not match is refused (460) — commit, and return the
        committed offset."""
        await self._drain()
        if self.checksum is not None and not self._checksum_verified(whole):
            await self._settle_checkpoint()
            await self._loop.run_in_executor(None, self.writer.discard_to, self.committed)
            if whole:
                raise ChecksumMismatch(
                    f"body does not match Upload-Checksum {self.checksum.algorithm}; "
                    f"chunk discarded, offset stays {self.committed}"
                )
            return self.committed
        await self.commit()
        return self.committed

    def _checksum_verified(self, whole: bool) -> bool:
        checksum = self.writer.body_checksum
        assert self.checksum is not None and checksum is not None
        return whole and hmac.compare_digest(checksum.digest(), self.checksum.digest)

    async def settle_after_error(self) -> None:
        """After a failed block (disk full, lost lock) keep what was written before it:
        the failed block is not in the writer's offset. Commit it if still allowed."""
        with contextlib.suppress(Exception):
            await self._drain()
        if self.checksum is not None:
            return  # an unverified checksummed body is never committed
        with contextlib.suppress(Exception):
            await self._settle_checkpoint()
        with contextlib.suppress(Exception):
            await self.commit()

    # -- checkpoints ----------------------------------------------------------------------

    def _after_block(self, done: asyncio.Future[None]) -> None:
        # Runs on the loop as the block completes, before the next block can be handed
        # out: the writer's offset and states are consistent here, so they are the
        # checkpoint's snapshot. Its fsync then overlaps the next blocks.
        if not done.cancelled() and done.exception() is None:
            self._maybe_checkpoint()

    def _maybe_checkpoint(self) -> None:
        """Start a checkpoint if one is due and none is running (a failed one is kept for
        append to raise). Call only when no block is in flight or one just completed."""
        running = self._checkpoint
        if running is not None:
            if not running.done() or running.cancelled() or running.exception() is not None:
                return
            self._checkpoint = None
        if self.writer.offset - self.committed >= self.checkpoint_bytes:
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

    def _snapshot(self) -> Snapshot:
        digests, scanner = self.writer.stream.states()
        return self.writer.offset, digests, scanner

    async def _commit_snapshot(self, snapshot: Snapshot) -> None:
        """fsync, then move the committed offset in Redis (only while the lock is ours)."""
        offset = snapshot[0]
        # The fsync covers at least every byte up to ``offset`` (written before it began).
        # It runs on the default executor: block hops never queue behind it.
        await self._loop.run_in_executor(None, self.writer.sync, offset)
        crash_point("commit-after-fsync")
        await self.session.commit(snapshot, expect_offset=self.committed)
        if self.on_commit is not None:
            self.on_commit(offset - self.committed)
        self.committed = offset
