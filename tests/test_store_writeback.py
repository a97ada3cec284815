"""Write-behind (store/writeback.py) on a real file: it loads on Linux and changes no bytes."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from store import writeback


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
