"""Partial files written straight to the disk (O_DIRECT, 4 KiB aligned, the last bytes
carried) or through the page cache, on real files: any sequence of blocks, commits,
discards and reopenings — by either kind of writer, taking turns — leaves the file, the
md5 and the line count of exactly the bytes sent; a commit's bytes are in the file while
the next block is going in; a failed write leaves the states at the bytes before it."""

from __future__ import annotations

import hashlib
import os
import random
import tempfile
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from store import sinks
from store.partial import PartialWriter, StreamState

pytestmark = pytest.mark.skipif(sinks.O_DIRECT is None, reason="no O_DIRECT on this system")

KiB = 1024


def open_writer(path: Path, offset: int, *, direct: bool, stream: StreamState) -> PartialWriter:
    previous = sinks._direct
    sinks.set_direct(direct)
    try:
        return PartialWriter.open(path, offset, stream)
    finally:
        sinks.set_direct(previous)


def test_the_direct_sink_is_chosen_where_the_filesystem_takes_it(tmp_path: Path) -> None:
    path = tmp_path / "p"
    path.touch()
    for direct, kind in ((True, sinks.DirectSink), (False, sinks.BufferedSink)):
        writer = open_writer(path, 0, direct=direct, stream=StreamState.fresh(["md5"]))
        try:
            assert isinstance(writer.sink, kind)
        finally:
            writer.close()
    assert "O_DIRECT" in sinks.describe(tmp_path)


chunk_sizes = st.lists(st.integers(1, 9 * KiB), min_size=1, max_size=4)
step = st.one_of(
    st.tuples(st.just("block"), chunk_sizes),
    st.tuples(st.just("commit"), st.none()),
    st.tuples(st.just("discard"), st.booleans()),  # a body that failed its checksum
    st.tuples(st.just("reopen"), st.booleans()),  # the next request, maybe another worker
)


@settings(max_examples=150, deadline=None)
@given(
    start=st.integers(0, 3 * sinks.ALIGN),
    steps=st.lists(step, max_size=14),
    direct=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_any_sequence_leaves_exactly_the_committed_bytes(
    start: int, steps: list[tuple[str, object]], direct: bool, seed: int
) -> None:
    rng = random.Random(seed)
    committed = bytes(rng.getrandbits(8) for _ in range(start))
    written = committed  # what the writer has taken since the last commit, on top
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "p"
        path.write_bytes(committed)
        writer = open_writer(path, len(committed), direct=direct, stream=fed(committed))
        try:
            for kind, argument in steps:
                if kind == "block":
                    assert isinstance(argument, list)
                    chunks = [rng.randbytes(size) for size in argument]
                    writer.write(chunks)
                    written += b"".join(chunks)
                elif kind == "commit":
                    writer.sync(written_before=writer.offset)
                    committed = written
                    # What a commit made durable is in the file, carried bytes included.
                    assert os.pread(writer.sink.fd, len(committed), 0) == committed
                elif kind == "discard":  # the request ends there; the next one reopens
                    writer.discard_to(len(committed))
                    assert path.stat().st_size == len(committed)
                    writer.close()
                    written = committed
                    writer = open_writer(
                        path, len(committed), direct=bool(argument), stream=fed(committed)
                    )
                else:
                    writer.close()  # an uncommitted tail is lost, as in a crash
                    written = committed
                    writer = open_writer(
                        path, len(committed), direct=bool(argument), stream=fed(committed)
                    )
                assert writer.offset == len(written)
                assert writer.stream.digests["md5"].hexdigest() == hashlib.md5(written).hexdigest()
                assert writer.stream.scanner.newlines == written.count(b"\n")
            writer.sync()
        finally:
            writer.close()
        assert path.read_bytes() == written


def fed(data: bytes) -> StreamState:
    stream = StreamState.fresh(["md5"])
    stream.feed_all([data])
    return stream


def test_a_commit_overlapping_the_next_blocks_finds_its_bytes_in_the_file(tmp_path: Path) -> None:
    # The appender's pattern: a checkpoint's fsync runs on another thread while the next
    # blocks go in; block ends fall anywhere within 4 KiB pages.
    rng = random.Random(5)
    path = tmp_path / "p"
    path.touch()
    writer = open_writer(path, 0, direct=True, stream=StreamState.fresh(["md5"]))
    sent = b""
    try:
        for _ in range(60):
            block = rng.randbytes(rng.randrange(1, 40 * KiB))
            writer.write([block])
            sent += block
            offset = writer.offset
            commit = threading.Thread(target=writer.sync, args=(offset,))
            commit.start()
            for _ in range(rng.randrange(0, 3)):
                more = rng.randbytes(rng.randrange(1, 6 * KiB))
                writer.write([more])
                sent += more
            commit.join()
            assert os.pread(writer.sink.fd, offset, 0) == sent[:offset]
        writer.sync()
    finally:
        writer.close()
    assert path.read_bytes() == sent


def test_a_failed_write_leaves_the_states_at_the_bytes_before_it(tmp_path: Path) -> None:
    path = tmp_path / "p"
    path.touch()
    writer = open_writer(path, 0, direct=True, stream=StreamState.fresh(["md5"]))
    try:
        first = os.urandom(10 * KiB + 3)
        writer.write([first])
        sink = writer.sink
        assert isinstance(sink, sinks.DirectSink)
        working, sink._write_fd = sink._write_fd, os.open(path, os.O_RDONLY)  # writes fail
        try:
            with pytest.raises(OSError):
                writer.write([b"\n" * (8 * KiB)])
        finally:
            os.close(sink._write_fd)
            sink._write_fd = working
        assert writer.offset == len(first)
        assert writer.stream.digests["md5"].hexdigest() == hashlib.md5(first).hexdigest()
        assert writer.stream.scanner.newlines == first.count(b"\n")
        last = os.urandom(5 * KiB)
        writer.write([last])  # the disk is back: the upload goes on from where it was
        writer.sync()
    finally:
        writer.close()
    assert path.read_bytes() == first + last


def test_a_block_larger_than_any_before_grows_the_buffer(tmp_path: Path) -> None:
    path = tmp_path / "p"
    path.touch()
    writer = open_writer(path, 0, direct=True, stream=StreamState.fresh(["md5"]))
    blocks = [os.urandom(size) for size in (100, 3 * 1024 * KiB + 1, 5 * KiB, 7 * 1024 * KiB)]
    try:
        for block in blocks:
            writer.write([block[:7], block[7:]])
        writer.sync()
    finally:
        writer.close()
    assert path.read_bytes() == b"".join(blocks)


def test_reopening_a_file_shorter_than_its_committed_offset_is_refused(tmp_path: Path) -> None:
    # The committed bytes are read back from the file to start the next aligned write;
    # a file cut short under the store is an I/O error, not silently zero bytes.
    path = tmp_path / "p"
    path.write_bytes(b"x" * 5000)
    fd, direct_fd = os.open(path, os.O_RDWR), os.open(path, os.O_RDWR)
    try:
        with pytest.raises(OSError, match="shorter"):
            sinks.DirectSink(fd, direct_fd, 9000)
    finally:
        os.close(fd)
        os.close(direct_fd)


def test_the_startup_probe_looks_where_the_upload_dir_will_be(tmp_path: Path) -> None:
    # Before the first start the directory does not exist yet: its parent's filesystem
    # is the one to ask, and the probe leaves nothing behind.
    assert "O_DIRECT, 4 KiB aligned" in sinks.describe(tmp_path / "data" / "uploads")
    assert list(tmp_path.iterdir()) == []
