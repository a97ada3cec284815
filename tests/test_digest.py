"""Resumable digests: any split of any bytes, saved and loaded between chunks, is hashlib."""

from __future__ import annotations

import ctypes
import hashlib
import itertools
import random
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from store import digest as dg
from store.digest import (
    DigestStateError,
    DigestUnavailableError,
    HashlibDigest,
    ResumableDigest,
    digest_backend,
    digests_available,
)
from store.partial import StreamState
from store.record import UploadRecord

NAMES = ["md5", "sha256"]


def chunks_of(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def hash_resuming(name: str, pieces: list[bytes]) -> str:
    d = ResumableDigest.new(name)
    for piece in pieces:
        # Every chunk is handled by "another request": only the saved bytes carry over.
        d = ResumableDigest.from_state(name, d.state())
        d.update(piece)
    d = ResumableDigest.from_state(name, d.state())
    assert d.length == sum(len(p) for p in pieces)
    return d.hexdigest()


def test_libcrypto_is_loaded_here() -> None:
    assert digests_available()
    assert "libcrypto" in digest_backend()
    assert isinstance(ResumableDigest.new("md5"), ResumableDigest)


@pytest.mark.parametrize("name", NAMES)
def test_known_vectors(name: str) -> None:
    for data in (b"", b"abc", b"a" * 63, b"a" * 64, b"a" * 65, b"x" * 1000):
        d = ResumableDigest.new(name)
        d.update(data)
        assert d.hexdigest() == hashlib.new(name, data).hexdigest()
        assert d.digest() == hashlib.new(name, data).digest()


@pytest.mark.parametrize("name", NAMES)
def test_context_struct_size(name: str) -> None:
    # The library must never write past the size we store: guard bytes stay intact.
    alg = dg.ALGORITHMS[name]
    fns = dg._FUNCTIONS[name]
    guard = 256
    buf = ctypes.create_string_buffer(b"\x5a" * (alg.ctx_size + guard), alg.ctx_size + guard)
    assert fns.init(buf) == 1
    data = bytes(range(256)) * 41
    assert fns.update(buf, data, len(data)) == 1
    assert buf.raw[alg.ctx_size :] == b"\x5a" * guard
    out = ctypes.create_string_buffer(alg.digest_size)
    assert fns.final(out, buf) == 1
    assert buf.raw[alg.ctx_size :] == b"\x5a" * guard
    assert out.raw == hashlib.new(name, data).digest()


@settings(max_examples=150, deadline=None)
@given(
    name=st.sampled_from(NAMES),
    data=st.binary(max_size=200_000),
    cuts=st.lists(st.integers(min_value=0, max_value=200_000), max_size=12),
)
def test_any_split_with_save_load_is_hashlib(name: str, data: bytes, cuts: list[int]) -> None:
    assert hash_resuming(name, chunks_of(data, cuts)) == hashlib.new(name, data).hexdigest()


@settings(max_examples=15, deadline=None)
@given(
    name=st.sampled_from(NAMES),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    size=st.integers(min_value=200_000, max_value=3_000_000),
    cuts=st.lists(st.integers(min_value=0, max_value=3_000_000), max_size=20),
)
def test_large_generated_data(name: str, seed: int, size: int, cuts: list[int]) -> None:
    data = random.Random(seed).randbytes(size)
    assert hash_resuming(name, chunks_of(data, cuts)) == hashlib.new(name, data).hexdigest()


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=5000), cut=st.integers(min_value=0, max_value=5000))
def test_hexdigest_is_non_destructive(data: bytes, cut: int) -> None:
    for name in NAMES:
        d = ResumableDigest.new(name)
        d.update(data[:cut])
        assert d.hexdigest() == hashlib.new(name, data[:cut]).hexdigest()
        assert d.hexdigest() == hashlib.new(name, data[:cut]).hexdigest()
        d.update(data[cut:])
        assert d.hexdigest() == hashlib.new(name, data).hexdigest()


@pytest.mark.parametrize("name", NAMES)
def test_buffer_kinds(name: str) -> None:
    data = random.Random(7).randbytes(100_003)
    backing = bytearray(data)
    d = ResumableDigest.new(name)
    d.update(backing[:10])  # bytearray
    d.update(memoryview(backing)[10:5000])  # writable view: no copy
    d.update(memoryview(data)[5000:9000])  # read-only view
    d.update(memoryview(backing)[9000:20000:1])  # contiguous slice
    d.update(memoryview(bytearray(data[20000:20400])).cast("I"))  # non-byte format
    d.update(memoryview(data[20400:])[:0])  # empty
    d.update(bytearray(data[20400:]))
    assert d.hexdigest() == hashlib.new(name, data).hexdigest()
    assert d.length == len(data)
    # A non-contiguous view hashes the bytes it shows.
    strided = memoryview(data)[::2]
    e = ResumableDigest.new(name)
    e.update(strided)
    assert e.hexdigest() == hashlib.new(name, data[::2]).hexdigest()
    # The bytearray is not left exported (it can be resized after update()).
    backing.extend(b"more")


def test_copy_is_independent() -> None:
    d = ResumableDigest.new("md5")
    d.update(b"hello ")
    c = d.copy()
    c.update(b"world")
    d.update(b"there")
    assert c.hexdigest() == hashlib.md5(b"hello world").hexdigest()
    assert d.hexdigest() == hashlib.md5(b"hello there").hexdigest()


@pytest.mark.parametrize("name", NAMES)
def test_state_layout(name: str) -> None:
    d = ResumableDigest.new(name)
    d.update(b"x" * 100)
    state = d.state()
    assert isinstance(state, bytes)
    header, _, raw = state.partition(b"\n")
    assert len(raw) == dg.ALGORITHMS[name].ctx_size
    assert header.split()[2].decode() == name


def test_state_from_another_platform_or_algorithm_is_refused() -> None:
    d = ResumableDigest.new("md5")
    d.update(b"some bytes")
    raw = d.state().partition(b"\n")[2]
    md5 = dg.ALGORITHMS["md5"]
    for tag in (
        dg._state_tag(md5, machine="aarch64"),
        dg._state_tag(md5, byteorder="big" if dg.sys.byteorder == "little" else "little"),
        dg._state_tag(md5).replace(b"rdigest 1 ", b"rdigest 99 "),
        dg._state_tag(md5).replace(b" 92 ", b" 96 "),
    ):
        with pytest.raises(DigestStateError):
            ResumableDigest.from_state("md5", tag + raw)
    # An md5 state is not a sha256 state.
    with pytest.raises(DigestStateError):
        ResumableDigest.from_state("sha256", d.state())


@pytest.mark.parametrize(
    "state",
    [
        b"",
        b"garbage",
        b"rdigest 1 md5 92 x86_64 little",  # no separator
        dg._state_tag(dg.ALGORITHMS["md5"]) + b"\x00" * 91,  # truncated
        dg._state_tag(dg.ALGORITHMS["md5"]) + b"\x00" * 93,  # too long
        dg._state_tag(dg.ALGORITHMS["md5"]) + b"\xff" * 92,  # num >= 64
    ],
)
def test_garbage_state_is_refused(state: bytes) -> None:
    with pytest.raises(DigestStateError):
        ResumableDigest.from_state("md5", state)


def test_unknown_algorithm() -> None:
    with pytest.raises(ValueError):
        ResumableDigest.new("sha1")
    with pytest.raises(ValueError):
        ResumableDigest.from_state("crc32", b"")


def test_update_from_threads_agrees() -> None:
    data = random.Random(3).randbytes(4 << 20)
    results: dict[int, str] = {}

    def work(i: int) -> None:
        d = ResumableDigest.new("md5")
        for off in range(0, len(data), 1 << 20):
            d.update(memoryview(data)[off : off + (1 << 20)])
        results[i] = d.hexdigest()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(results.values()) == {hashlib.md5(data).hexdigest()}


def test_update_releases_the_gil() -> None:
    # One long update() in a thread; the main thread (standing for the event loop) must
    # keep running.  With the GIL held, its longest pause would be the whole call.
    data = bytes(128 << 20)
    d = ResumableDigest.new("md5")
    worker = threading.Thread(target=d.update, args=(data,))
    ticks, longest = 0, 0.0
    start = last = time.perf_counter()
    worker.start()
    while worker.is_alive():
        time.sleep(0.001)
        now = time.perf_counter()
        ticks, longest, last = ticks + 1, max(longest, now - last), now
    worker.join()
    call = time.perf_counter() - start
    assert d.hexdigest() == hashlib.md5(data).hexdigest()
    assert ticks >= 5
    assert longest < call / 2


# --- fallback (no libcrypto) -------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_fallback_is_correct_but_not_resumable(name: str) -> None:
    d = ResumableDigest.new(name, native=False)
    assert isinstance(d, HashlibDigest)
    d.update(b"abc")
    d.update(bytearray(b"def"))
    d.update(memoryview(b"ghi"))
    assert d.state() is None
    c = d.copy()
    c.update(b"!")
    assert d.hexdigest() == hashlib.new(name, b"abcdefghi").hexdigest()
    assert (d.length, c.length) == (9, 10)
    assert c.hexdigest() == hashlib.new(name, b"abcdefghi!").hexdigest()


def test_fallback_when_libcrypto_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    assert dg._load_libcrypto(["/nonexistent/libcrypto.so.42", "libc.so.6"]) is None
    monkeypatch.setattr(dg, "_FUNCTIONS", None)
    assert not digests_available()
    assert digest_backend() == "hashlib (not resumable)"
    d = ResumableDigest.new("md5")
    assert isinstance(d, HashlibDigest) and d.state() is None
    with pytest.raises(DigestUnavailableError):
        ResumableDigest.new("md5", native=True)
    with pytest.raises(DigestStateError):
        ResumableDigest.from_state("md5", b"anything")


def test_unusable_saved_states_are_recomputed_from_the_partial_file(tmp_path: Path) -> None:
    """The slow path (another platform's state, a garbage one): the digests are rebuilt
    from the partial file, and can then be saved and continued like any other."""
    data = random.Random(5).randbytes(1_000_000)
    path = tmp_path / "upload.part"
    path.write_bytes(data)
    record = UploadRecord(
        id="0" * 32, owner="alice", length=None, offset=len(data), metadata="", destination="f",
        digest_states={"md5": b"rdigest 1 md5 92 sparc big\n" + bytes(92), "sha256": b"junk"},
    )  # fmt: skip
    stream = StreamState.restore(record, ["md5", "sha256"], path)
    for name, digest in stream.digests.items():
        assert digest.hexdigest() == hashlib.new(name, data).hexdigest()
        state = digest.state()
        assert state is not None
        more = ResumableDigest.from_state(name, state)
        more.update(b"tail")
        assert more.hexdigest() == hashlib.new(name, data + b"tail").hexdigest()
    assert stream.scanner.size == len(data)


def test_length_counts_past_four_gib() -> None:
    # Nh carries the high bits of the bit count: a 5 GiB-style count survives save/load.
    d = ResumableDigest.new("md5")
    raw = bytearray(d.state().partition(b"\n")[2])
    header = d.state().partition(b"\n")[0] + b"\n"
    total = 5 << 30  # 5 GiB, a multiple of 64: num stays 0
    dg.struct.pack_into("=II", raw, 16, (total << 3) & 0xFFFFFFFF, (total << 3) >> 32)
    e = ResumableDigest.from_state("md5", header + bytes(raw))
    assert e.length == total
