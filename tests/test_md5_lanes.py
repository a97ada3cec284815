"""The multi-buffer md5 engine: any bytes, in any chunks, from any number of threads at
once, mixed with libcrypto updates and saved states, give hashlib's md5."""

from __future__ import annotations

import ctypes
import hashlib
import multiprocessing
import os
import random
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from store import md5_lanes
from store.digest import ResumableDigest
from tests.test_digest import chunks_of

pytestmark = pytest.mark.skipif(
    md5_lanes.lanes() == 0, reason="md5 lanes need the built extension and AVX-512"
)


def new_md5() -> ResumableDigest:
    digest = ResumableDigest.new("md5")
    assert isinstance(digest, ResumableDigest)
    return digest


def engine_md5(pieces: list[list[bytes]]) -> ResumableDigest:
    """One engine update per list of chunks, each on a digest reloaded from its state."""
    digest = new_md5()
    for chunks in pieces:
        digest = ResumableDigest.from_state("md5", digest.state())
        md5_lanes.update(digest._ctx, chunks)
    return digest


@settings(max_examples=300, deadline=None)
@given(
    data=st.binary(max_size=1000),
    cuts=st.lists(st.integers(min_value=0, max_value=1000), max_size=8),
    group=st.integers(min_value=1, max_value=4),
)
def test_any_chunking_is_hashlib(data: bytes, cuts: list[int], group: int) -> None:
    chunks = chunks_of(data, cuts)
    pieces = [chunks[i : i + group] for i in range(0, len(chunks), group)]
    digest = engine_md5(pieces)
    assert digest.hexdigest() == hashlib.md5(data).hexdigest()
    assert digest.length == len(data)


@settings(max_examples=100, deadline=None)
@given(data=st.binary(max_size=700), plan=st.lists(st.tuples(st.booleans(), st.integers(0, 200))))
def test_engine_and_libcrypto_take_turns(data: bytes, plan: list[tuple[bool, int]]) -> None:
    """A digest moves between the engine and MD5_Update at any byte (one request on a
    host with the engine, the next on one without)."""
    digest = new_md5()
    at = 0
    for by_engine, size in [*plan, (True, len(data))]:
        piece = data[at : at + size]
        at += len(piece)
        if by_engine:
            md5_lanes.update(digest._ctx, [piece])
        else:
            digest.update(piece)
    assert digest.hexdigest() == hashlib.md5(data).hexdigest()


def test_many_streams_at_once_share_lanes() -> None:
    """Twenty threads of unaligned MiB-sized chunks, all sent to the engine: every digest
    and saved state is libcrypto's, and the engine ran lanes side by side."""
    before = md5_lanes.stats()
    failures: list[str] = []
    start = threading.Barrier(20)

    def stream(seed: int) -> None:
        rng = random.Random(seed)
        data = rng.randbytes(rng.randint(3, 6) * 1024 * 1024 + rng.randint(0, 999))
        cuts = [rng.randint(0, len(data)) for _ in range(12)]
        chunks = chunks_of(data, cuts)
        digest = new_md5()
        start.wait()
        for i in range(0, len(chunks), 3):
            md5_lanes.update(digest._ctx, chunks[i : i + 3], to_engine=True)
        by_libcrypto = new_md5()
        by_libcrypto.update(data)
        if digest.hexdigest() != hashlib.md5(data).hexdigest():
            failures.append(f"stream {seed}: digest")
        if digest.state() != by_libcrypto.state():  # byte for byte, unused bytes too
            failures.append(f"stream {seed}: saved state")

    threads = [threading.Thread(target=stream, args=(seed,)) for seed in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    after = md5_lanes.stats()
    assert after["updates"] - before["updates"] >= 20 * 4
    assert after["passes"] > before["passes"]
    lane_blocks = after["lane_blocks"] - before["lane_blocks"]
    pass_blocks = after["pass_blocks"] - before["pass_blocks"]
    assert lane_blocks >= 3 * pass_blocks  # X16_MIN_LANES streams or more per pass


def test_one_thread_going_through_many_uploads_does_not_wait_for_company() -> None:
    """Contexts updated once each, one after another (small uploads in a row), are not
    streams that could share lanes: every update runs at once in its caller's thread."""
    time.sleep(0.05)  # streams of earlier tests leave the engine's 30 ms window
    before = md5_lanes.stats()
    digests = [new_md5() for _ in range(200)]  # all alive: no context address comes twice
    for digest in digests:
        md5_lanes.update(digest._ctx, [b"small upload" * 100])
    after = md5_lanes.stats()
    assert after["inline_updates"] - before["inline_updates"] == 200
    assert after["updates"] == before["updates"]


def test_writable_buffers_of_every_kind() -> None:
    data = os.urandom(5000)
    digest = new_md5()
    md5_lanes.update(digest._ctx, [data[:10], bytearray(data[10:2000]), memoryview(data)[2000:]])
    assert digest.hexdigest() == hashlib.md5(data).hexdigest()


@pytest.mark.parametrize(
    ("ctx", "chunks", "error"),
    [
        (ctypes.create_string_buffer(91), [b"x"], ValueError),  # not an MD5_CTX
        (ctypes.create_string_buffer(b"\xff" * 92, 92), [b"x"], ValueError),  # num >= 64
        (b"\0" * 92, [b"x"], TypeError),  # read-only: the result would be lost
        (ctypes.create_string_buffer(92), 5, TypeError),  # chunks not a sequence
        (ctypes.create_string_buffer(92), ["text"], TypeError),  # not bytes
    ],
)
def test_refuses_what_is_not_a_context_and_chunks(ctx: object, chunks: object, error: type) -> None:
    before = bytes(ctx) if not isinstance(ctx, bytes) else ctx  # type: ignore[call-overload]
    with pytest.raises(error):
        md5_lanes.update(ctx, chunks)  # type: ignore[arg-type]
    assert (bytes(ctx) if not isinstance(ctx, bytes) else ctx) == before  # type: ignore[call-overload]


def _hash_in_child(queue: multiprocessing.Queue[str]) -> None:
    digest = new_md5()
    md5_lanes.update(digest._ctx, [b"after fork" * 100_000])
    queue.put(digest.hexdigest())


def test_a_forked_child_gets_its_own_engine() -> None:
    """gunicorn forks its workers: a child must not wait on its parent's engine thread."""
    md5_lanes.update(new_md5()._ctx, [b"warm the parent's engine"])
    context = multiprocessing.get_context("fork")
    queue: multiprocessing.Queue[str] = context.Queue()
    child = context.Process(target=_hash_in_child, args=(queue,))
    child.start()
    child.join(30)
    assert child.exitcode == 0
    assert queue.get(timeout=5) == hashlib.md5(b"after fork" * 100_000).hexdigest()


def test_switched_off() -> None:
    md5_lanes.set_enabled(False)
    try:
        assert md5_lanes.lanes() == 0
        assert md5_lanes.describe() == "libcrypto (md5 lanes off)"
        before = md5_lanes.stats()
        digest = new_md5()
        digest.update_all([b"abc", b"def"])
        assert digest.hexdigest() == hashlib.md5(b"abcdef").hexdigest()
        assert md5_lanes.stats() == before  # libcrypto did it
    finally:
        md5_lanes.set_enabled(True)
    assert md5_lanes.lanes() == 16
