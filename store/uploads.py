"""The store's front door: create uploads, open one under its lock, and the scans the
janitor makes.

Handlers never touch Redis or the partial files themselves: they ask :class:`Uploads`
for a new upload, or for an :class:`~store.session.UploadSession` of an existing one
(owned by the caller, locked, its interrupted finalize completed), and call its
intent-level methods.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from protocol.errors import BadRequest, Conflict, Gone, Locked, NotFound, PayloadTooLarge, TusError
from protocol.lifecycle import UploadKind, UploadState

from . import md5_lanes
from .events import Events, Listener
from .keys import JANITOR_LOCK_NAME
from .layout import DataLayout
from .locks import LockSettings, UploadLock, acquire_lock, keep_renewed
from .partial import StreamState, create_partial, partial_path, remove_partial
from .paths import ensure_dir, refuse_twin
from .quotas import Quotas, UserLimits
from .record import UploadRecord, is_upload_id
from .replication import ReplicatedWrites, ReplicaWaitSettings
from .session import UploadSession
from .staged_file import StagedFile, open_staged
from .state_store import StateStore
from .topology import RedisClient

log = logging.getLogger("tus_staging.store")


def block_threads() -> int:
    """Threads for block hops. With md5 lanes, one per lane: a thread waiting for the
    engine costs no CPU, and only uploads whose blocks are in flight at the same time can
    share a pass (two threads for eight uploads would leave the lanes empty). Without
    them, two per core (one upload's block can wait on the disk while another's is
    hashed); more would only contend for the CPU and the GIL with the event loop."""
    return md5_lanes.lanes() or 2 * (os.cpu_count() or 2)


@dataclass(frozen=True)
class StoreSettings:
    digest_names: tuple[str, ...] = ("md5",)
    lock: LockSettings = field(default_factory=LockSettings)
    expire_after: float = 7 * 24 * 3600.0  # an unfinished upload, after its last commit
    completed_ttl: float = 24 * 3600.0  # a staged upload's record, after completion
    checkpoint_bytes: int = 64 * 1024 * 1024  # fsync + commit every this many bytes
    max_size: int | None = None  # bytes; None: no limit
    limits: UserLimits = field(default_factory=UserLimits)
    replica_wait: ReplicaWaitSettings = field(default_factory=ReplicaWaitSettings)


@dataclass
class StoreObservers:
    """What the service counts (metrics); the store only calls these."""

    lock_waited: Callable[[], None] = lambda: None
    finalized: Callable[[float], None] = lambda seconds: None
    event: Callable[[str], None] = lambda kind: None
    blocks_written: Callable[[], None] = lambda: None
    # A record write waited for replicas: seconds, and whether they acknowledged in time.
    replica_wait: Callable[[float, bool], None] = lambda seconds, acknowledged: None


class Uploads:
    def __init__(
        self,
        redis: RedisClient,
        layout: DataLayout,
        settings: StoreSettings,
        *,
        executor: Executor | None = None,
        observers: StoreObservers | None = None,
        on_finished: Listener | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.redis = redis
        self.layout = layout
        self.settings = settings
        # Block writes and hashing (store/appender.py) get threads of their own, so fsyncs
        # and finalizes on the default executor never queue behind them.
        self.executor = executor or ThreadPoolExecutor(
            max_workers=block_threads(), thread_name_prefix="blocks"
        )
        self.observers = observers or StoreObservers()
        self.bodies_streaming = 0  # appenders open in this process (store/appender.py)
        self.clock = clock
        writes = ReplicatedWrites(redis, settings.replica_wait, self.observers.replica_wait)
        self.records = StateStore(redis, writes)
        self.quotas = Quotas(redis, settings.limits)
        self.events = Events(redis, on_finished, self.observers.event)

    # -- creating ---------------------------------------------------------------------------

    def check_size(self, length: int) -> None:
        max_size = self.settings.max_size
        if max_size is not None and length > max_size:
            raise PayloadTooLarge(f"Upload-Length {length} exceeds the maximum of {max_size}")

    async def create(
        self,
        owner: str,
        *,
        length: int | None,
        metadata: str,
        destination: PurePosixPath | None,
        kind: UploadKind = UploadKind.PLAIN,
        source: str = "",
        protocol: str = "tus",
    ) -> UploadRecord:
        """A new upload at offset 0 with an empty partial file (``destination`` None for a
        concatenation's partial upload, which is never staged; ``source`` what its metadata
        record will say of how it came, the default "tus upload"; ``protocol`` the front
        door it came through, for events and operators)."""
        if length is not None:
            self.check_size(length)
        if destination is not None:
            await asyncio.to_thread(self._check_destination, owner, destination)
        record = UploadRecord.new(
            owner=owner,
            length=length,
            metadata=metadata,
            destination=str(destination) if destination is not None else "",
            expire_after=self.settings.expire_after,
            concat="partial" if kind is UploadKind.PART else "",
            now=self.clock(),
            source=source,
            protocol=protocol,
        )
        record.digest_states, record.scan_state = StreamState.fresh(
            list(self.settings.digest_names)
        ).states()
        await self._reserve_and_create(record, with_partial_file=True)
        return record

    async def create_final(
        self,
        owner: str,
        *,
        part_ids: list[str],
        header: str,
        destination: PurePosixPath,
        metadata: str,
    ) -> UploadRecord:
        """A concatenation's final upload of ``part_ids``, concatenated (and staged) at once
        when every part is complete; else when the last one completes."""
        if len(set(part_ids)) != len(part_ids):
            raise BadRequest("Upload-Concat lists a partial upload more than once")
        parts = [await self._owned(owner, part_id) for part_id in part_ids]
        for part in parts:
            if part.kind is not UploadKind.PART:
                raise BadRequest(f"upload {part.id} is not a partial upload (Upload-Concat)")
            if part.length is None:
                raise BadRequest(f"partial upload {part.id} has no Upload-Length yet")
        length = sum(part.length or 0 for part in parts)
        self.check_size(length)
        await asyncio.to_thread(self._check_destination, owner, destination)
        record = UploadRecord.new(
            owner=owner,
            length=length,
            metadata=metadata,
            destination=str(destination),
            expire_after=self.settings.expire_after,
            concat=header,
            parts=part_ids,
            now=self.clock(),
        )
        await self._claim_parts(record)
        try:
            await self._reserve_and_create(record, with_partial_file=False)
        except BaseException:
            await self.records.unclaim_parts(part_ids, record.id)
            raise
        for part_id in part_ids:
            await self.records.wait_for_part(part_id, record.id)
        await self.concatenate(record.id)
        return await self.records.get(record.id) or record

    async def _claim_parts(self, final: UploadRecord) -> None:
        # Each part feeds exactly one final: a small upload cannot be staged many times.
        claimed: list[str] = []
        for part_id in final.parts:
            owner = await self.records.claim_part(part_id, final.id, 2 * self.settings.expire_after)
            if owner is not None:
                await self.records.unclaim_parts(claimed, final.id)
                raise Conflict(f"partial upload {part_id} already belongs to final upload {owner}")
            claimed.append(part_id)

    async def _reserve_and_create(self, record: UploadRecord, *, with_partial_file: bool) -> None:
        await self.quotas.reserve(record.owner, record.id, record.reserved_bytes)
        path = partial_path(self.layout.upload_dir, record.id)
        try:
            if with_partial_file:
                await asyncio.to_thread(create_partial, path)
            try:
                await self.records.create(record)
            except BaseException:
                # No record will ever point at it: the janitor would never find it.
                await asyncio.to_thread(remove_partial, path)
                raise
        except BaseException:
            with contextlib.suppress(Exception):
                await self.quotas.release(record.owner, record.id)
            raise
        await self.events.emit("created", record)

    def _check_destination(self, owner: str, destination: PurePosixPath) -> None:
        """Refuse now, not after hundreds of GB, a destination that cannot be staged."""
        staged = self.layout.staged_path(owner, destination)
        if staged.is_dir():
            raise BadRequest(f"destination {str(destination)!r} is an existing directory")
        home = self.layout.user_home(owner)
        refuse_twin(home, destination, f"the destination's {str(destination)!r}")
        ensure_dir(home)

    # -- opening ----------------------------------------------------------------------------

    async def lock(self, name: str, settings: LockSettings) -> UploadLock:
        """The lock of an upload, or of any named resource (see store/keys.py)."""
        return await acquire_lock(self.redis, name, settings, writes=self.records.writes)

    async def _owned(self, owner: str, upload_id: str) -> UploadRecord:
        """The record if it exists and is the user's; 404 otherwise (never 403: no probing)."""
        record = await self.records.get(upload_id) if is_upload_id(upload_id) else None
        if record is None or record.owner != owner:
            raise NotFound(f"no upload {upload_id!r}")
        return record

    def _refuse_expired(self, record: UploadRecord) -> None:
        if record.is_expired(self.clock()):
            raise Gone(f"upload {record.id} expired and is being removed")

    async def peek(self, owner: str, upload_id: str) -> UploadRecord | None:
        """The record, read without the lock, when nobody holds the lock and it needs no
        care (the cheap path for HEAD); None otherwise: open an UploadSession instead."""
        if not is_upload_id(upload_id):
            raise NotFound(f"no upload {upload_id!r}")
        locked, record = await self.records.get_unless_locked(upload_id)
        if locked:
            return None
        if record is None or record.owner != owner:
            raise NotFound(f"no upload {upload_id!r}")
        self._refuse_expired(record)
        return None if record.status is UploadState.FINALIZING else record

    async def current(self, owner: str, upload_id: str) -> UploadRecord:
        """The committed record as a new request must see it: read without the lock when
        nobody holds it; else the holder (maybe a request whose client vanished) is asked to
        commit and let go, so that every byte it received is counted."""
        record = await self.peek(owner, upload_id)
        if record is not None:
            return record
        async with self.session(owner, upload_id) as session:
            return session.record

    async def open_staged(self, owner: str, upload_id: str) -> StagedFile:
        """The staged file of a finished upload, opened for reading: 409 while the upload
        is unfinished, 404 when the file at its path is no longer the one it staged
        (moved, deleted, or replaced by a later upload). The caller closes it."""
        record = await self._owned(owner, upload_id)
        if record.status is UploadState.FINALIZING:
            async with self.session(owner, upload_id) as session:  # completes the finalize
                record = session.record
        if record.status is not UploadState.COMPLETE:
            length = "?" if record.length is None else record.length
            raise Conflict(
                f"upload {upload_id} is not complete ({record.offset} of {length} bytes): "
                "it has no file to serve yet"
            )
        if record.kind is UploadKind.PART:
            raise Conflict(f"upload {upload_id} is a partial upload: only its final is staged")
        staged = await asyncio.to_thread(open_staged, record, self.layout)
        if staged is None:
            raise NotFound(
                f"the file upload {upload_id} staged is no longer at {record.destination!r}: "
                "moved, deleted or replaced since"
            )
        return staged

    @contextlib.asynccontextmanager
    async def session(
        self, owner: str, upload_id: str, *, terminating: bool = False
    ) -> AsyncIterator[UploadSession]:
        """Hold the upload's lock (asking a current holder to let go) and yield an
        UploadSession on its committed record. A finalize that a crash interrupted is
        completed first, except when ``terminating``: DELETE works whatever state the
        upload is in."""
        await self._owned(owner, upload_id)  # 404 before anyone is asked to let go
        lock = await self.lock(upload_id, self.settings.lock)
        session: UploadSession | None = None
        try:
            record = await self._owned(owner, upload_id)
            if lock.waited:
                self.observers.lock_waited()
            session = UploadSession(self, record, lock)
            if not terminating:
                self._refuse_expired(record)
                if record.status is UploadState.FINALIZING:
                    await session.finish()
            yield session
        finally:
            await asyncio.shield(lock.release())
            if session is not None:
                await self._after_release(session)

    async def _after_release(self, session: UploadSession) -> None:
        for step in session.after_release:
            try:
                await step()
            except TusError as error:
                log.warning("upload %s: %s", session.record.id, error.reason)
            except Exception:
                log.exception("after upload %s", session.record.id)

    @contextlib.asynccontextmanager
    async def _quick_session(self, upload_id: str) -> AsyncIterator[UploadSession | None]:
        """An UploadSession for background work, or None when the upload is gone or busy
        (busy: someone is on it right now, so it is not abandoned)."""
        quick = LockSettings(ttl=self.settings.lock.ttl, wait=0.2)
        try:
            lock = await self.lock(upload_id, quick)
        except Locked:
            yield None
            return
        session: UploadSession | None = None
        try:
            record = await self.records.get(upload_id)
            session = UploadSession(self, record, lock) if record is not None else None
            yield session
        finally:
            await asyncio.shield(lock.release())
            if session is not None:
                await self._after_release(session)

    # -- background work --------------------------------------------------------------------

    async def concatenate(self, final_id: str) -> None:
        """Concatenate (and stage) a final upload if all its parts are complete."""
        async with self._quick_session(final_id) as session:
            if session is not None and session.record.status is UploadState.PARTIAL:
                try:
                    await session.finish()
                except TusError as error:
                    # The final stays as it is; a request on it says why.
                    log.warning("final upload %s: %s", final_id, error.reason)

    async def drop_part(self, part_id: str) -> None:
        """Remove a partial upload whose bytes were concatenated into its final."""
        async with self._quick_session(part_id) as session:
            if session is not None:
                await self.records.delete(session.lock, part_id)
                await asyncio.to_thread(remove_partial, session.partial_path)

    async def expire(self, upload_id: str) -> bool:
        """Remove ``upload_id`` if it is past its expiry and nobody is on it."""
        async with self._quick_session(upload_id) as session:
            if session is None:
                if not await self.records.exists(upload_id):
                    await self.records.set_expiry(upload_id, None)
                return False
            if not await session.expire():
                if session.record.status is not UploadState.PARTIAL:
                    await self.records.set_expiry(upload_id, None)  # staged meanwhile
                return False
            return True

    async def complete_finalize(self, upload_id: str) -> bool:
        """Complete a finalize whose request died; False when there is nothing to do."""
        async with self._quick_session(upload_id) as session:
            if session is None or session.record.status is not UploadState.FINALIZING:
                if session is not None or not await self.records.exists(upload_id):
                    await self.records.mark_finalizing(upload_id, None)
                return False
            await session.finish()
            return True

    @contextlib.asynccontextmanager
    async def janitor_lease(self) -> AsyncIterator[bool]:
        """Hold the janitor's lease (one pass at a time across every worker and host);
        yields False when another pass is running."""
        quick = LockSettings(ttl=self.settings.lock.ttl, wait=0.0)
        try:
            lock: UploadLock = await self.lock(JANITOR_LOCK_NAME, quick)
        except Locked:
            yield False
            return
        try:
            async with keep_renewed(lock):
                yield True
        finally:
            await asyncio.shield(lock.release())

    def close(self) -> None:
        """Wait for the block threads (a stopping worker's last blocks)."""
        self.executor.shutdown(wait=True)

    async def open_count(self) -> int:
        return await self.records.open_count()

    async def ping(self) -> bool:
        return bool(await self.redis.ping())
