"""Appending a request body to an upload: one executor hop per block, and checkpoints.

The caller hands over blocks (socket chunks gathered to about a block size, kept as they
came) one at a time. Each block makes one hop to the block executor, which writes it at
its offset, hashes it and scans it (all three without the GIL where the C extensions are
built). A block is queued behind the one in flight and starts from the thread that
finished that one, without waiting for the event loop; the caller then waits for the
block in flight and reads the next from the network meanwhile, so at most two blocks
are held, whatever the upload's size. With other bodies streaming in the process the
caller waits for the block in flight before queueing: the loop paces the blocks.

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
from concurrent.futures import CancelledError, Executor, Future
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
        alone: Callable[[], bool] = lambda: True,
    ):
        self.session = session
        self.lock = session.lock
        self.writer = writer
        self.executor = executor
        self.checkpoint_bytes = checkpoint_bytes
        self.checksum = checksum
        self.on_commit = on_commit  # told how many bytes each commit made durable
        self.alone = alone  # whether no other body streams in this process
        if checksum is not None:
            # Nothing of a checksummed body may be committed before the whole body is checked.
            writer.body_checksum = new_checksum(checksum.algorithm)
            self.checkpoint_bytes = sys.maxsize
        self.committed = writer.offset
        self._in_flight: asyncio.Future[Snapshot | None] | None = None  # the last block queued
        self._last_queued: Future[Snapshot | None] | None = None
        self._checkpoint: asyncio.Future[None] | None = None  # a commit overlapping the body
        self._committing = False  # commit() or settle_after_error() is under way
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
        """Queue one block behind the one in flight, then wait for that one: at most two
        blocks are held, and the next is ready the moment the block thread is free. With
        other bodies streaming in this process, wait for the one in flight first."""
        if not chunks:
            return
        if self._checkpoint is not None and self._checkpoint.done():
            await self._settle_checkpoint()  # surfaces a failed checkpoint (lost lock, …)
        self.lock.check_valid()  # a writer that outlived its lock stops here
        if self.lock.renewal_due():
            await self.lock.renew()
        previous = self._in_flight
        if previous is not None and not self.alone():
            # Other uploads stream too: the event loop paces the blocks, so that bulk work
            # never runs ahead of the requests the loop has to answer.
            await previous
        queued = asyncio.wrap_future(self._queue(chunks), loop=self._loop)
        queued.add_done_callback(self._after_block)
        self._in_flight = queued
        if previous is not None:
            await previous  # its error, if any, is the queued block's too

    def _queue(self, chunks: Sequence[bytes]) -> Future[Snapshot | None]:
        """The block's hop, submitted as soon as the block before it is done, from the
        thread that finished it: no round trip through the event loop between blocks.
        After a failed block the next ones fail with its error, unwritten."""
        queued: Future[Snapshot | None] = Future()
        step = functools.partial(self._write_step, chunks)

        def start(before: Future[Snapshot | None] | None = None) -> None:
            if not queued.set_running_or_notify_cancel():
                return  # cancelled while it waited: never written
            if before is not None and before.cancelled():
                queued.set_exception(CancelledError())
                return
            if before is not None and (error := before.exception()) is not None:
                queued.set_exception(error)
                return
            try:
                hop = self.executor.submit(step)
            except RuntimeError as error:  # the executor is shutting down
                queued.set_exception(error)
                return
            hop.add_done_callback(functools.partial(_pass_on, queued))

        last, self._last_queued = self._last_queued, queued
        if last is None:
            start()
        else:
            last.add_done_callback(start)  # at once if it is done already
        return queued

    def _write_step(self, chunks: Sequence[bytes]) -> Snapshot | None:
        """Write, hash and scan a block (in a block thread); if a checkpoint is due, the
        snapshot to commit, taken before the next block can change the states."""
        self.writer.write(chunks)
        return self._snapshot() if self._due(self.writer.offset) else None

    async def keep_alive(self) -> None:
        """Renew the lock (and learn of release requests) while the client is silent."""
        await self.lock.renew()

    async def commit(self) -> None:
        """Commit everything written so far."""
        # No checkpoint may start meanwhile (a block's completion can still be on its way
        # to the loop after the drain): this commit covers its bytes, and two commits in
        # flight would both start from the same offset.
        self._committing = True
        try:
            await self._drain()
            await self._settle_checkpoint()
            if self.writer.offset != self.committed:
                await self._commit_snapshot(self._snapshot())
        finally:
            self._committing = False

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
        self._committing = True  # as in commit(), which ends it
        with contextlib.suppress(Exception):
            await self._drain()
        if self.checksum is not None:
            return  # an unverified checksummed body is never committed
        with contextlib.suppress(Exception):
            await self._settle_checkpoint()
        with contextlib.suppress(Exception):
            await self.commit()

    # -- checkpoints ----------------------------------------------------------------------

    def _after_block(self, done: asyncio.Future[Snapshot | None]) -> None:
        # The snapshot was taken in the block thread as the block ended; the checkpoint's
        # fsync then overlaps the next blocks.
        if not done.cancelled() and done.exception() is None:
            snapshot = done.result()
            if snapshot is not None:
                self._maybe_checkpoint(snapshot)

    def _maybe_checkpoint(self, snapshot: Snapshot) -> None:
        """Start a checkpoint of ``snapshot`` if it is still due and none is running (a
        failed one is kept for append to raise) and no commit is under way."""
        if self._committing:
            return
        running = self._checkpoint
        if running is not None:
            if not running.done() or running.cancelled() or running.exception() is not None:
                return
            self._checkpoint = None
        if self._due(snapshot[0]):
            checkpoint = asyncio.ensure_future(self._commit_snapshot(snapshot))
            checkpoint.add_done_callback(self._after_checkpoint)
            self._checkpoint = checkpoint

    def _after_checkpoint(self, done: asyncio.Future[None]) -> None:
        # Bytes that arrived during the fsync may already make the next checkpoint due; if
        # no block is in flight nobody else would start it until the client sends more.
        # (Not when commit() has taken this checkpoint over: it commits the rest itself.)
        idle = self._in_flight is None or self._in_flight.done()  # the states stand still
        if self._checkpoint is done and idle and self._due(self.writer.offset):
            self._maybe_checkpoint(self._snapshot())

    def _due(self, offset: int) -> bool:
        """Whether a checkpoint at ``offset`` is due."""
        return offset - self.committed >= self.checkpoint_bytes

    async def _drain(self) -> None:
        in_flight = self._in_flight
        if in_flight is not None:
            try:
                await in_flight
            finally:
                if self._in_flight is in_flight:  # until then it counts as in flight
                    self._in_flight = None
                self._last_queued = None  # a failure is told once; later blocks start anew

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


def _pass_on(to: Future[Snapshot | None], hop: Future[Snapshot | None]) -> None:
    """Give ``to`` the outcome of ``hop``."""
    if hop.cancelled():
        to.set_exception(CancelledError())
    elif (error := hop.exception()) is not None:
        to.set_exception(error)
    else:
        to.set_result(hop.result())
