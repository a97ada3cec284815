"""The buffered writer's side work, on real files (store/sinks.py writes through the page
cache where O_DIRECT is off or refused): write-behind (store/writeback.py) loads on
Linux, changes no bytes and gets every written byte once, in contiguous windows;
checkpoints hand durable bytes back to the page cache."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from store import partial, sinks, writeback


@pytest.mark.skipif(sys.platform != "linux", reason="sync_file_range is Linux-only")
def test_sync_file_range_is_found_on_linux() -> None:
    # Without it every upload would silently fall back to burst fsyncs (and HEAD stalls).
    assert writeback.available()


def test_started_writeback_leaves_the_bytes_as_written(tmp_path: Path) -> None:
    path = tmp_path / "f"
    data = os.urandom(3 * 1024 * 1024 + 17)
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        os.pwrite(fd, data, 0)
        writeback.start_writeback(fd, 0, 1024 * 1024)
        writeback.start_writeback(fd, 1024 * 1024, len(data) - 1024 * 1024)
        writeback.start_writeback(fd, len(data), 0)  # nothing to do
    finally:
        os.close(fd)
    assert path.read_bytes() == data


def test_a_failing_call_is_ignored(tmp_path: Path) -> None:
    # A closed descriptor: the kernel refuses (EBADF); the fsync at the checkpoint still
    # makes the bytes durable, so losing the hint must not fail the upload.
    fd = os.open(tmp_path / "g", os.O_CREAT | os.O_WRONLY, 0o644)
    os.close(fd)
    writeback.start_writeback(fd, 0, 4096)


WINDOW = 64 * 1024
MiB = 1024 * 1024


@settings(max_examples=60, deadline=None)
@given(
    start=st.integers(0, 3 * WINDOW),
    sizes=st.lists(st.integers(1, 3 * WINDOW), max_size=12),
)
def test_writer_starts_writeback_in_contiguous_windows(start: int, sizes: list[int]) -> None:
    started: list[tuple[int, int]] = []
    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as patch:
        patch.setattr(sinks, "_direct", False)
        patch.setattr(sinks, "WRITEBACK_WINDOW", WINDOW)
        patch.setattr(sinks, "start_writeback", lambda fd, off, n: started.append((off, n)))
        path = Path(tmp) / "p"
        path.write_bytes(b"\0" * start)
        writer = partial.PartialWriter.open(path, start, partial.StreamState.fresh(["md5"]))
        try:
            for size in sizes:
                writer.write([os.urandom(size)])
        finally:
            writer.close()
        assert path.stat().st_size == start + sum(sizes)
    position = start
    for offset, count in started:
        assert offset == position  # no gap, no overlap
        assert WINDOW <= count < WINDOW + 3 * WINDOW
        position += count
    assert start + sum(sizes) - position < WINDOW  # only the last, short window is left


def test_discarded_bytes_are_started_again_once_rewritten(tmp_path: Path) -> None:
    started: list[tuple[int, int]] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sinks, "_direct", False)
        patch.setattr(sinks, "WRITEBACK_WINDOW", WINDOW)
        patch.setattr(sinks, "start_writeback", lambda fd, off, n: started.append((off, n)))
        path = tmp_path / "p"
        path.touch()
        writer = partial.PartialWriter.open(path, 0, partial.StreamState.fresh(["md5"]))
        writer.write([b"x" * (WINDOW // 2)])
        writer.discard_to(0)  # a chunk that failed its checksum
        writer.write([b"y" * WINDOW])
        writer.close()
    assert started == [(0, WINDOW)]


def cached_bytes(path: Path) -> int:
    """Bytes of ``path`` in the page cache, as util-linux's fincore reports them."""
    out = subprocess.run(
        ["fincore", "--bytes", "--noheadings", "--output", "RES", str(path)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return int(out.stdout.strip())


@pytest.mark.skipif(shutil.which("fincore") is None, reason="util-linux fincore not installed")
def test_checkpoint_sync_hands_the_durable_bytes_back_to_the_page_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sinks, "_direct", False)
    path = tmp_path / "p"
    path.touch()
    writer = partial.PartialWriter.open(path, 0, partial.StreamState.fresh(["md5"]))
    try:
        writer.write([os.urandom(4 * MiB), os.urandom(4 * MiB)])
        writer.sync()  # no offset named: durable, and the cache is left alone
        assert cached_bytes(path) == 8 * MiB
        writer.sync(written_before=8 * MiB)
        assert cached_bytes(path) == 0
        writer.write([os.urandom(4 * MiB)])
        writer.sync(written_before=10 * MiB)  # bytes past the named offset stay cached
        assert 0 < cached_bytes(path) <= 2 * MiB
    finally:
        writer.close()
    assert path.stat().st_size == 12 * MiB
