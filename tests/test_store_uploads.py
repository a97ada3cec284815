"""The store's upload life against a real Redis and real files, without HTTP: sessions,
blocked finalizes, the janitor, quotas, events, completed records."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import os
import threading
from collections.abc import AsyncIterator
from concurrent.futures import CancelledError, ThreadPoolExecutor
from pathlib import Path, PurePosixPath

import pytest
from redis.asyncio import Redis

from protocol.errors import Conflict, Gone, InsufficientStorage, TusError
from protocol.lifecycle import UploadKind, UploadState
from store import events as store_events
from store.finalize import FinalizeBlocked
from store.janitor import janitor_pass
from store.keys import EVENTS_STREAM_KEY, upload_key, user_uploads_key
from store.layout import DataLayout
from store.quotas import TooManyUploads, UserLimits
from store.record import UploadRecord
from store.uploads import StoreSettings, Uploads

from .hand_clock import Clock

USER = "alice"


@pytest.fixture
def clock() -> Clock:
    return Clock(1_800_000_000.0)  # a wall-clock time


@pytest.fixture
async def uploads(redis: Redis, tmp_path: Path, clock: Clock) -> AsyncIterator[Uploads]:
    layout = DataLayout.under(tmp_path / "data")
    layout.create_dirs()
    store = Uploads(
        redis,
        layout,
        StoreSettings(limits=UserLimits(max_open_uploads=5, max_reserved_bytes=10_000)),
        clock=clock,
    )
    yield store
    store.close()


async def upload(uploads: Uploads, data: bytes, destination: str) -> str:
    """Create, append in blocks of 1000 bytes, finish; the upload's id."""
    record = await uploads.create(
        USER, length=len(data), metadata="", destination=PurePosixPath(destination)
    )
    async with uploads.session(USER, record.id) as session:
        async with session.appending() as appender:
            for start in range(0, len(data), 1000):
                await appender.append([data[start : start + 1000]])
            await appender.end_body(whole=True)
        await session.finish()
    return record.id


def staged(uploads: Uploads, relative: str) -> Path:
    return uploads.layout.staging_dir / USER / relative


def sidecar(uploads: Uploads, relative: str) -> dict:
    return json.loads((uploads.layout.metadata_dir / USER / relative).read_text())


CONCAT_OF_KIND = {
    UploadKind.PLAIN: "",
    UploadKind.PART: "partial",
    UploadKind.FINAL: "final;/files/a /files/b",
}
# Not GONE: a record is deleted before its upload is gone.
STORED_STATES = (UploadState.PARTIAL, UploadState.FINALIZING, UploadState.COMPLETE)


@pytest.mark.parametrize(("kind", "status"), list(itertools.product(UploadKind, STORED_STATES)))
def test_what_expires_past_its_expiry(kind: UploadKind, status: UploadState) -> None:
    """Every unstaged upload, and a concatenation's partial upload even once complete (it
    is never staged); nothing before its expiry, nor without one."""
    record = UploadRecord(
        id="u", owner=USER, length=1, offset=0, metadata="", destination="f",
        status=status, expires=100.0, concat=CONCAT_OF_KIND[kind],
    )  # fmt: skip
    assert record.kind is kind
    expected = status is not UploadState.COMPLETE or kind is UploadKind.PART
    assert record.is_expired(100.0) is expected
    assert record.is_expired(200.0) is expected
    assert not record.is_expired(99.9)
    record.expires = None
    assert not record.is_expired(200.0)


async def test_an_upload_lands_with_its_metadata_and_its_record_expires(
    uploads: Uploads, redis: Redis
) -> None:
    data = b"one line\n" * 500
    upload_id = await upload(uploads, data, "run/lines.txt")
    assert staged(uploads, "run/lines.txt").read_bytes() == data
    meta = sidecar(uploads, "run/lines.txt")
    assert meta["md5"] == hashlib.md5(data).hexdigest()
    assert meta["lineCount"] == "500" and meta["uploadId"] == upload_id
    # The staged record keeps what HEAD needs, not the digest and scanner states, and goes
    # after a day; its reservation is given back.
    fields = await redis.hkeys(upload_key(upload_id))
    assert b"status" in fields and b"scan" not in fields and b"digest:md5" not in fields
    assert 0 < await redis.ttl(upload_key(upload_id)) <= 24 * 3600
    assert await redis.hlen(user_uploads_key(USER)) == 0


@pytest.mark.parametrize("length", [232, 250, 255])
async def test_names_up_to_the_limit_finalize(uploads: Uploads, length: int) -> None:
    name = "n" * (length - 4) + ".txt"
    await upload(uploads, b"x" * 10, name)
    assert sidecar(uploads, name)["size"] == 10


async def test_a_blocked_finalize_says_why_and_the_upload_stays_deletable(
    uploads: Uploads,
) -> None:
    record = await uploads.create(USER, length=3, metadata="", destination=PurePosixPath("d/f"))
    # After creation, a file appears where the destination's folder should be.
    staged(uploads, "d").write_bytes(b"in the way")
    async with uploads.session(USER, record.id) as session:
        async with session.appending() as appender:
            await appender.append([b"abc"])
            await appender.end_body(whole=True)
        with pytest.raises(FinalizeBlocked) as blocked:
            await session.finish()
    assert blocked.value.status == 409 and "DELETE the upload" in blocked.value.reason
    # Every later request says why, with 409, and never a 500.
    with pytest.raises(FinalizeBlocked):
        async with uploads.session(USER, record.id):
            pass
    partial = uploads.layout.upload_dir / f"{record.id}.part"
    assert partial.exists()
    async with uploads.session(USER, record.id, terminating=True) as session:
        await session.terminate()
    assert not partial.exists()
    assert await uploads.records.get(record.id) is None


async def test_the_janitor_handles_each_entry_on_its_own(
    uploads: Uploads, clock: Clock, redis: Redis
) -> None:
    """Blocked finalizes ahead of healthy interrupted ones do not stop the pass."""
    blocked, healthy = [], []
    for index in range(4):
        name = f"poisoned{index}/f" if index < 2 else f"fine{index}/f"
        record = await uploads.create(USER, length=2, metadata="", destination=PurePosixPath(name))
        async with uploads.session(USER, record.id) as session:
            async with session.appending() as appender:
                await appender.append([b"ok"])
                await appender.end_body(whole=True)
            # Fix the record and mark it finalizing, as a request that then died would.
            session.record.status = UploadState.FINALIZING
            session.record.result = json.dumps({"size": 2}).encode()
            session.record.partial_identity = "0:0"
            await uploads.records.update(session.lock, session.record, ["status", "result"])
            await uploads.records.mark_finalizing(record.id, clock.now)
        (blocked if index < 2 else healthy).append(record.id)
        if index < 2:
            staged(uploads, f"poisoned{index}").write_bytes(b"a file, not a folder")
    # A finalize younger than the janitor's patience may still be running: left alone.
    report = await janitor_pass(uploads, min_finalize_age=60)
    assert report is not None and (report.finalized, report.failed) == (0, 0)
    clock.now += 61
    report = await janitor_pass(uploads, min_finalize_age=60)
    assert report is not None
    assert (report.finalized, report.failed) == (2, 2)
    for upload_id in healthy:
        found = await uploads.records.get(upload_id)
        assert found is not None and found.status is UploadState.COMPLETE
    # A finalize blocked past the upload's expiry goes like any abandoned upload: the
    # partial file (maybe hundreds of GB) with it.
    clock.now += uploads.settings.expire_after + 1
    with pytest.raises(Gone):
        async with uploads.session(USER, blocked[0]):
            pass
    report = await janitor_pass(uploads, min_finalize_age=-1)
    assert report is not None and report.expired == 2
    for upload_id in blocked:
        assert await uploads.records.get(upload_id) is None
        assert not (uploads.layout.upload_dir / f"{upload_id}.part").exists()


async def test_each_user_has_limits_on_open_uploads_and_reserved_bytes(
    uploads: Uploads, redis: Redis
) -> None:
    ids = []
    for _ in range(5):
        record = await uploads.create(USER, length=1000, metadata="", destination=None)
        ids.append(record.id)
    with pytest.raises(TooManyUploads) as refused:
        await uploads.create(USER, length=1, metadata="", destination=None)
    assert refused.value.status == 429 and "unfinished uploads" in refused.value.reason
    # Other users have their own limits.
    await uploads.create("bob", length=9_000, metadata="", destination=None)
    async with uploads.session(USER, ids[0], terminating=True) as session:
        await session.terminate()
    with pytest.raises(InsufficientStorage):  # 4 x 1000 reserved, 10 000 allowed
        await uploads.create(USER, length=6_001, metadata="", destination=None)
    await uploads.create(USER, length=6_000, metadata="", destination=None)
    # A reservation whose upload is gone (a crash between two steps) is pruned.
    await redis.hset(user_uploads_key(USER), "0" * 32, 1)
    report = await janitor_pass(uploads, min_finalize_age=60)
    assert report is not None and report.pruned == 1


async def test_a_deferred_length_reserves_once_declared(uploads: Uploads) -> None:
    record = await uploads.create(USER, length=None, metadata="", destination=None)
    async with uploads.session(USER, record.id) as session:
        with pytest.raises(InsufficientStorage):
            await session.declare_length(10_001)
        await session.declare_length(10_000)
    assert (await uploads.records.get(record.id)).length == 10_000


async def test_no_user_starves_the_others_events(
    uploads: Uploads, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_events, "USER_MAXLEN", 20)
    monkeypatch.setattr(store_events, "STREAM_MAXLEN", 1000)
    finished = await upload(uploads, b"kept", "kept.txt")
    loud = []
    for _ in range(60):
        record = await uploads.create("mallory", length=None, metadata="", destination=None)
        loud.append(record.id)
        async with uploads.session("mallory", record.id, terminating=True) as session:
            await session.terminate()
    entries = await redis.xrange(EVENTS_STREAM_KEY)
    users = [fields[b"user"].decode() for _, fields in entries]
    assert users.count("mallory") == 20
    kinds = {(f[b"user"], f[b"event"], f[b"uploadId"].decode()) for _, f in entries}
    assert (USER.encode(), b"finished", finished) in kinds
    # The newest of the loud user's events are the ones kept.
    assert (b"mallory", b"terminated", loud[-1]) in kinds


async def test_a_name_that_looks_like_an_existing_one_is_refused(uploads: Uploads) -> None:
    (staged(uploads, "x").parent).mkdir(parents=True, exist_ok=True)
    staged(uploads, "caf\u00e9").mkdir()  # NFC
    with pytest.raises(Conflict) as refused:
        await uploads.create(
            USER, length=1, metadata="", destination=PurePosixPath("cafe\u0301/f.txt")
        )
    assert "looks the same" in refused.value.reason
    assert os.listdir(uploads.layout.upload_dir) == []
    # The name as listed works.
    await upload(uploads, b"z", "caf\u00e9/f.txt")


async def test_refusals_are_one_line(uploads: Uploads) -> None:
    with pytest.raises(TusError) as refused:
        await uploads.create(USER, length=20_000, metadata="", destination=None)
    assert "\n" not in refused.value.reason


class GatedExecutor(ThreadPoolExecutor):
    """Block threads whose first job waits for ``gate``; notes which thread submitted each."""

    def __init__(self) -> None:
        super().__init__(max_workers=2)
        self.gate = threading.Event()
        self.submitters: list[threading.Thread] = []

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def,override]
        first = not self.submitters
        self.submitters.append(threading.current_thread())
        if first:
            inner = fn

            def fn(*args, **kwargs):  # type: ignore[no-untyped-def]
                assert self.gate.wait(timeout=30)
                return inner(*args, **kwargs)

        return super().submit(fn, *args, **kwargs)


async def created(store: Uploads, name: str, length: int) -> UploadRecord:
    return await store.create(USER, length=length, metadata="", destination=PurePosixPath(name))


def gate_of(store: Uploads) -> GatedExecutor:
    assert isinstance(store.executor, GatedExecutor)
    return store.executor


@pytest.fixture
async def gated(redis: Redis, tmp_path: Path, clock: Clock) -> AsyncIterator[Uploads]:
    layout = DataLayout.under(tmp_path / "gated")
    layout.create_dirs()
    settings = StoreSettings(checkpoint_bytes=1500)
    store = Uploads(redis, layout, settings, executor=GatedExecutor(), clock=clock)
    yield store
    store.close()


async def test_a_block_queued_behind_another_starts_from_the_thread_that_finished_it(
    gated: Uploads,
) -> None:
    executor = gate_of(gated)
    blocks = [os.urandom(1000) for _ in range(3)]
    record = await created(gated, "queued.bin", 3000)
    async with gated.session(USER, record.id) as session:
        async with session.appending() as appender:
            await appender.append([blocks[0]])  # its hop waits at the gate
            second = asyncio.create_task(appender.append([blocks[1]]))
            await asyncio.sleep(0)  # it queues its block, then waits for the first
            assert not second.done()  # it waits for the first block: two blocks held
            executor.gate.set()
            await second
            await appender.append([blocks[2]])
            assert await appender.end_body(whole=True) == 3000
        await session.finish()
    loop_thread = threading.current_thread()
    assert executor.submitters[0] is loop_thread
    assert executor.submitters[1] is not loop_thread  # no trip through the event loop
    assert sidecar(gated, "queued.bin")["md5"] == hashlib.md5(b"".join(blocks)).hexdigest()


async def test_after_a_failed_block_the_one_queued_behind_it_is_not_written(
    gated: Uploads, monkeypatch: pytest.MonkeyPatch
) -> None:
    executor = gate_of(gated)
    record = await created(gated, "failed.bin", 4000)
    async with gated.session(USER, record.id) as session, session.appending() as appender:
        writes: list[int] = []
        real_write = appender.writer.write

        def write(chunks: list[bytes]) -> None:
            writes.append(len(writes))
            if len(writes) == 1:
                raise OSError(28, "No space left on device")
            real_write(chunks)

        monkeypatch.setattr(appender.writer, "write", write)
        await appender.append([b"a" * 1000])
        second = asyncio.create_task(appender.append([b"b" * 1000]))
        await asyncio.sleep(0)
        executor.gate.set()
        with pytest.raises(OSError, match="No space"):
            await second
        await appender.settle_after_error()
        assert writes == [0]  # the second block never reached the writer
        assert appender.committed == 0
        await appender.append([b"c" * 1000])  # the error was told; blocks start anew
        assert await appender.end_body(whole=False) == 1000


async def test_with_another_body_streaming_the_event_loop_paces_the_blocks(
    gated: Uploads,
) -> None:
    # Bulk work must not run ahead of the requests the loop has to answer (HEAD p50 went
    # from ~10 to ~50 ms with 8 uploads at once when blocks ran back to back).
    executor = gate_of(gated)
    first, other = [await created(gated, name, 2000) for name in ("paced.bin", "other.bin")]
    async with (
        gated.session(USER, first.id) as session,
        gated.session(USER, other.id) as other_session,
        session.appending() as appender,
        other_session.appending(),
    ):
        await appender.append([b"a" * 1000])  # waits at the gate
        second = asyncio.create_task(appender.append([b"b" * 1000]))
        await asyncio.sleep(0)
        assert len(executor.submitters) == 1  # not queued: it waits for the first
        executor.gate.set()
        await second
        assert executor.submitters[1] is threading.current_thread()
        assert await appender.end_body(whole=True) == 2000


async def test_a_block_done_in_its_thread_but_not_yet_seen_by_the_loop_starts_no_second_commit(
    gated: Uploads,
) -> None:
    # The block that makes a checkpoint due finishes in its thread; the loop learns it
    # only after commit() has begun. That commit covers the block: no checkpoint may
    # start beside it from the same offset (StaleOffset).
    executor = gate_of(gated)
    record = await created(gated, "late.bin", 3000)
    commits: list[int] = []  # bytes each commit made durable
    async with gated.session(USER, record.id) as session:
        async with session.appending(on_commit=commits.append) as appender:
            await appender.append([b"x" * 2000])  # due: 2000 ≥ 1500 bytes since a commit
            queued = appender._last_queued
            assert queued is not None
            executor.gate.set()
            queued.result(timeout=30)  # done in its thread; the loop has not run since
            await asyncio.sleep(0)  # the loop marks it done; its callbacks come after us
            await appender.commit()
            assert appender.committed == 2000
            await appender.append([b"y" * 1000])
            assert await appender.end_body(whole=True) == 3000
        await session.finish()
    assert commits == [2000, 1000]
    assert sidecar(gated, "late.bin")["md5"] == hashlib.md5(b"x" * 2000 + b"y" * 1000).hexdigest()


async def test_a_block_queued_behind_a_cancelled_one_is_not_written_and_says_so(
    gated: Uploads,
) -> None:
    executor = gate_of(gated)
    record = await created(gated, "cancelled.bin", 3000)
    async with gated.session(USER, record.id) as session, session.appending() as appender:
        await appender.append([b"a" * 1000])  # in a block thread, at the gate
        behind = appender._queue([b"b" * 1000])  # waits for the first
        last = appender._queue([b"c" * 1000])  # waits for the one above
        assert behind.cancel()  # e.g. its waiter went away
        executor.gate.set()
        with pytest.raises(CancelledError):
            last.result(timeout=30)
        await appender.commit()
        assert appender.committed == 1000  # neither was written
