"""The multi-buffer md5 engine: any bytes, in any chunks, from any number of threads at
once, mixed with libcrypto updates and saved states, give hashlib's md5 — on every kernel
this CPU runs. The portable kernel runs everywhere the extension is built, so the engine's
queueing, state handling and error paths are tested on every machine; only a vector
kernel's own tests skip where the CPU lacks its instructions."""

from __future__ import annotations

import ctypes
import hashlib
import multiprocessing
import os
import random
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from store import md5_lanes
from store.digest import ResumableDigest
from tests.test_digest import chunks_of

pytestmark = pytest.mark.skipif(not md5_lanes.built(), reason="md5 lanes extension not built")

KERNELS = ("avx512", "avx2", "portable")
LANES = {"avx512": 16, "avx2": 8, "portable": 0}
NARROW = 8  # lanes of a narrow pass (_md5lanes.c): more ready streams take a wide one


@contextmanager
def on_kernel(name: str, min_streams: int = 0) -> Iterator[None]:
    """Hash on kernel ``name`` (skip where this CPU lacks it), then back to the default."""
    if name not in md5_lanes.kernels():
        pytest.skip(f"this CPU has no {name} (it runs {md5_lanes.kernels()})")
    md5_lanes.use_kernel(name, min_streams=min_streams)
    try:
        yield
    finally:
        md5_lanes.use_kernel(None)


def new_md5() -> ResumableDigest:
    digest = ResumableDigest.new("md5")
    assert isinstance(digest, ResumableDigest)
    return digest


def libcrypto_md5(data: bytes) -> ResumableDigest:
    digest = new_md5()
    digest.update(data)
    return digest


def engine_md5(pieces: list[list[bytes]]) -> ResumableDigest:
    """One engine update per list of chunks, each on a digest reloaded from its state."""
    digest = new_md5()
    for chunks in pieces:
        digest = ResumableDigest.from_state("md5", digest.state())
        md5_lanes.update(digest._ctx, chunks, to_engine=True)
    return digest


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {key: after[key] - before[key] for key in after}


def in_threads(count: int, work: Callable[[int], None]) -> dict[str, int]:
    """``work(0)`` .. ``work(count - 1)`` in threads of their own; what the engine did."""
    before = md5_lanes.stats()
    threads = [threading.Thread(target=work, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return delta(before, md5_lanes.stats())


def test_the_extension_is_built_where_a_compiler_is() -> None:
    """Without this, a failed build would only show as skipped tests."""
    if not sys.platform.startswith("linux") or not shutil.which("cc"):
        pytest.skip("no C compiler here: the package installs without the extension")
    assert md5_lanes.built()


def test_the_best_kernel_is_the_default_and_portable_the_last() -> None:
    names = md5_lanes.kernels()
    assert names[-1] == "portable"
    assert set(names) <= set(KERNELS)
    md5_lanes.use_kernel(None)
    current = md5_lanes.kernel()
    assert current is not None
    assert (current.name, current.lanes) == (names[0], LANES[names[0]])


@pytest.mark.parametrize("name", KERNELS)
def test_a_kernel_says_what_it_is(name: str) -> None:
    with on_kernel(name):
        current = md5_lanes.kernel()
        assert current is not None
        assert current.name == name
        assert md5_lanes.lanes() == current.lanes == LANES[name]
        if current.lanes:
            assert current.min_streams >= 2  # one stream is libcrypto's job
            assert md5_lanes.describe() == (
                f"md5 lanes engine, {current.lanes} lanes ({name}) from "
                f"{current.min_streams} streams; libcrypto below"
            )
        else:
            assert current.min_streams == 0  # never routed to the engine
            assert md5_lanes.describe().startswith("libcrypto (")


@settings(max_examples=150, deadline=None)
@given(
    data=st.binary(max_size=3000),
    cuts=st.lists(st.integers(min_value=0, max_value=3000), max_size=8),
    group=st.integers(min_value=1, max_value=4),
)
@pytest.mark.parametrize("name", KERNELS)
def test_any_chunking_is_hashlib(name: str, data: bytes, cuts: list[int], group: int) -> None:
    """Each update goes through the kernel's lanes even alone (min_streams=1), between
    saves and loads; the state is libcrypto's, byte for byte (unused bytes too)."""
    chunks = chunks_of(data, cuts)
    pieces = [chunks[i : i + group] for i in range(0, len(chunks), group)]
    with on_kernel(name, min_streams=1):
        digest = engine_md5(pieces)
    assert digest.hexdigest() == hashlib.md5(data).hexdigest()
    assert digest.length == len(data)
    assert digest.state() == libcrypto_md5(data).state()


@settings(max_examples=100, deadline=None)
@given(data=st.binary(max_size=2000), plan=st.lists(st.tuples(st.booleans(), st.integers(0, 300))))
@pytest.mark.parametrize("name", KERNELS)
def test_engine_and_libcrypto_take_turns(
    name: str, data: bytes, plan: list[tuple[bool, int]]
) -> None:
    """A digest moves between the engine and MD5_Update at any byte (one request on a
    host with the engine, the next on one without)."""
    digest = new_md5()
    at = 0
    with on_kernel(name, min_streams=1):
        for by_engine, size in [*plan, (True, len(data))]:
            piece = data[at : at + size]
            at += len(piece)
            if by_engine:
                md5_lanes.update(digest._ctx, [piece], to_engine=True)
            else:
                digest.update(piece)
    assert digest.hexdigest() == hashlib.md5(data).hexdigest()
    assert digest.state() == libcrypto_md5(data).state()


@pytest.mark.parametrize("name", KERNELS)
def test_many_streams_at_once_share_lanes(name: str) -> None:
    """Twenty threads of unaligned MiB-sized chunks, all sent to the engine: every digest
    and saved state is libcrypto's, and the kernel ran them side by side (more streams
    than a pass takes wait their turn)."""
    failures: list[str] = []
    start = threading.Barrier(20)

    def stream(seed: int) -> None:
        rng = random.Random(seed)
        data = rng.randbytes(rng.randint(3, 6) * 1024 * 1024 + rng.randint(0, 999))
        chunks = chunks_of(data, [rng.randint(0, len(data)) for _ in range(12)])
        digest = new_md5()
        start.wait()
        for i in range(0, len(chunks), 3):
            md5_lanes.update(digest._ctx, chunks[i : i + 3], to_engine=True)
        if digest.hexdigest() != hashlib.md5(data).hexdigest():
            failures.append(f"stream {seed}: digest")
        if digest.state() != libcrypto_md5(data).state():
            failures.append(f"stream {seed}: saved state")

    with on_kernel(name):
        min_streams = md5_lanes.kernel().min_streams
        done = in_threads(20, stream)
    assert failures == []
    assert done["updates"] >= 20 * 4
    if LANES[name]:
        assert done["passes"] > 0
        assert done["lane_blocks"] >= min_streams * done["pass_blocks"]
        if LANES[name] == NARROW:
            assert done["wide_passes"] == 0  # more streams take turns in 8 lanes
    else:
        assert done["passes"] == 0
        assert done["single_blocks"] >= 20 * 3 * 1024 * 1024 // 64 - 20 * 20


@pytest.mark.parametrize("name", [k for k in KERNELS if LANES[k] > NARROW])
def test_more_streams_than_a_narrow_pass_take_a_wide_one(name: str) -> None:
    """Sixteen streams of 16 MiB at once: while more than NARROW of them are in the
    engine together, passes take them all."""
    data = random.Random(16).randbytes(16 * 1024 * 1024)
    expected = libcrypto_md5(data).state()
    states: list[bytes] = []
    start = threading.Barrier(16)

    def stream(_: int) -> None:
        digest = new_md5()
        start.wait()
        md5_lanes.update(digest._ctx, [data], to_engine=True)
        states.append(digest.state())

    with on_kernel(name):
        done = in_threads(16, stream)
    assert states == [expected] * 16
    assert done["wide_passes"] > 0


@pytest.mark.parametrize("name", [k for k in KERNELS if LANES[k]])
def test_paced_streams_wait_for_each_other_to_share_passes(name: str) -> None:
    """Four uploads that each hand over a block every few milliseconds, out of step (as
    blocks come off the network): an update waits, at most half its own stream's gap,
    for the others' before a pass starts, so they share passes instead of taking turns."""
    block = random.Random(4).randbytes(256 * 1024)
    start = threading.Barrier(4)

    def stream(index: int) -> None:
        digest = new_md5()
        start.wait()
        time.sleep(0.001 * index)  # out of step
        for _ in range(16):
            md5_lanes.update(digest._ctx, [block], to_engine=True)
            time.sleep(0.004)  # the next block is still arriving
        assert digest.hexdigest() == hashlib.md5(block * 16).hexdigest()

    with on_kernel(name):
        done = in_threads(4, stream)
    assert done["holds"] > 0
    assert done["lane_blocks"] >= 2.5 * done["pass_blocks"]  # taking turns: ~1 per pass
    assert done["held_ns"] <= done["holds"] * 10_000_000  # never past the longest hold


@pytest.mark.parametrize("name", KERNELS)
def test_updates_go_to_the_engine_from_min_streams_on(name: str) -> None:
    """Three contexts updated in turn: an update goes to the engine once three contexts
    have each arrived twice recently, and runs inline before."""
    with on_kernel(name, min_streams=3):
        digests = [new_md5() for _ in range(3)]
        before = md5_lanes.stats()
        routed = []
        for _ in range(3):
            for digest in digests:
                counts = md5_lanes.stats()
                md5_lanes.update(digest._ctx, [b"block" * 1000])
                routed.append(
                    "engine" if md5_lanes.stats()["updates"] > counts["updates"] else "inline"
                )
        done = delta(before, md5_lanes.stats())
    assert routed == ["inline"] * 5 + ["engine"] * 4
    assert (done["inline_updates"], done["updates"]) == (5, 4)
    for digest in digests:
        assert digest.hexdigest() == hashlib.md5(b"block" * 3000).hexdigest()


def test_one_thread_going_through_many_uploads_does_not_wait_for_company() -> None:
    """Contexts updated once each, one after another (small uploads in a row), are not
    streams that could share lanes: every update runs at once in its caller's thread."""
    md5_lanes.use_kernel(None)  # counts the streams afresh
    before = md5_lanes.stats()
    digests = [new_md5() for _ in range(200)]  # all alive: no context address comes twice
    for digest in digests:
        md5_lanes.update(digest._ctx, [b"small upload" * 100])
    done = delta(before, md5_lanes.stats())
    assert done["inline_updates"] == 200
    assert done["updates"] == 0


@pytest.mark.parametrize("name", KERNELS)
def test_writable_buffers_of_every_kind(name: str) -> None:
    data = os.urandom(5000)
    digest = new_md5()
    chunks = [data[:10], bytearray(data[10:2000]), memoryview(data)[2000:]]
    with on_kernel(name, min_streams=1):
        md5_lanes.update(digest._ctx, chunks, to_engine=True)
    assert digest.hexdigest() == hashlib.md5(data).hexdigest()


@pytest.mark.parametrize(
    ("ctx", "chunks", "error"),
    [
        (ctypes.create_string_buffer(91), [b"x"], ValueError),  # not an MD5_CTX
        (ctypes.create_string_buffer(b"\xff" * 92, 92), [b"x"], ValueError),  # num >= 64
        (b"\0" * 92, [b"x"], TypeError),  # read-only: the result would be lost
        (ctypes.create_string_buffer(92), 5, TypeError),  # chunks not a sequence
        (ctypes.create_string_buffer(92), [b"ok", "text"], TypeError),  # not bytes
    ],
)
def test_refuses_what_is_not_a_context_and_chunks(ctx: object, chunks: object, error: type) -> None:
    before = bytes(ctx) if not isinstance(ctx, bytes) else ctx  # type: ignore[call-overload]
    with pytest.raises(error):
        md5_lanes.update(ctx, chunks, to_engine=True)  # type: ignore[arg-type]
    assert (bytes(ctx) if not isinstance(ctx, bytes) else ctx) == before  # type: ignore[call-overload]


@pytest.mark.parametrize(
    ("name", "min_streams", "message"),
    [
        ("neon", 0, "no md5 kernel 'neon' on this CPU (it has ["),
        ("", 0, "no md5 kernel '' on this CPU"),
        ("portable", -1, "min_streams must be 1 or more"),
    ],
)
def test_refuses_a_kernel_it_cannot_run(name: str, min_streams: int, message: str) -> None:
    current = md5_lanes.kernel()
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("[", r"\[")):
        md5_lanes.use_kernel(name, min_streams=min_streams)
    assert md5_lanes.kernel() == current


@pytest.mark.parametrize("setting", ["portable", "portable:4", *KERNELS])
def test_a_setting_picks_the_kernel(setting: str) -> None:
    name, _, streams = setting.partition(":")
    if name not in md5_lanes.kernels():
        pytest.skip(f"this CPU has no {name}")
    try:
        md5_lanes.use_kernel_setting(setting)
        current = md5_lanes.kernel()
        assert current is not None
        assert current.name == name
        if streams:
            assert current.min_streams == int(streams)
    finally:
        md5_lanes.use_kernel(None)


@pytest.mark.parametrize("setting", ["avx1024", "portable:x", "avx2:-2"])
def test_a_bad_kernel_setting_is_refused(setting: str) -> None:
    with pytest.raises(ValueError, match=f"^md5 kernel '{setting}': "):
        md5_lanes.use_kernel_setting(setting)
    assert md5_lanes.kernel().name == md5_lanes.kernels()[0]  # unchanged


def _hash_in_child(queue: multiprocessing.Queue[tuple[str, str]]) -> None:
    digest = new_md5()
    md5_lanes.update(digest._ctx, [b"after fork" * 100_000], to_engine=True)
    current = md5_lanes.kernel()
    assert current is not None
    queue.put((current.name, digest.hexdigest()))


@pytest.mark.parametrize("name", KERNELS)
def test_a_forked_child_gets_its_own_engine(name: str) -> None:
    """gunicorn forks its workers: a child must not wait on its parent's engine thread,
    and it hashes on the kernel the parent chose."""
    with on_kernel(name, min_streams=1):
        md5_lanes.update(new_md5()._ctx, [b"warm the parent's engine" * 100], to_engine=True)
        context = multiprocessing.get_context("fork")
        queue: multiprocessing.Queue[tuple[str, str]] = context.Queue()
        child = context.Process(target=_hash_in_child, args=(queue,))
        child.start()
        child.join(30)
    assert child.exitcode == 0
    assert queue.get(timeout=5) == (name, hashlib.md5(b"after fork" * 100_000).hexdigest())


def test_switched_off() -> None:
    md5_lanes.use_kernel(None)
    lanes = md5_lanes.lanes()
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
    assert md5_lanes.lanes() == lanes == LANES[md5_lanes.kernels()[0]]
