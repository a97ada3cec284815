"""Where a partial file's bytes go: straight to the disk (``O_DIRECT``) or through the
page cache. Both take blocks at the end of the file and make a prefix durable on demand.

**Direct** (the default where the filesystem takes it): blocks are copied into a
page-aligned buffer (the disk-writer thread's own, not one per upload) and written with
``O_DIRECT`` from a 4 KiB boundary, so that the
kernel neither copies them into the page cache nor writes them back later: that copy,
the delayed allocation and the writeback were a fifth of the server's CPU, and on
virtual disks the buffered path's writeback ran at a fraction of the device's own rate.
The last bytes of a block, short of a 4 KiB boundary, are kept by the upload's sink (the
*carry*) and go out at the front of the next block's write. A commit needs every byte up to its
offset on disk, carried ones too: :meth:`DirectSink.write_through` writes those few
through a second, ordinary descriptor (a few KiB in the page cache, which the next
direct write over them flushes first, as the kernel does for any direct write).
A lock keeps that write and the next block's direct write apart (a checkpoint's fsync
runs on another thread, beside the next block).

**Buffered** (where ``O_DIRECT`` is refused: tmpfs on older kernels, some network
filesystems, macOS): ``pwritev`` of the chunks as they came, with write-behind
(store/writeback.py).
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import tempfile
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

from . import writeback
from .writeback import drop_cached, start_writeback

ALIGN = 4096  # file offsets, lengths and memory of direct writes (any disk's logical block)
IOV_MAX = 1024  # Linux's limit on buffers per pwritev call
# Bytes written before their disk write is started (store/writeback.py): large enough
# for the filesystem to allocate and submit big extents, small enough that a
# checkpoint's fsync never meets a burst.
WRITEBACK_WINDOW = 16 * 1024 * 1024

O_DIRECT: int | None = getattr(os, "O_DIRECT", None)
_direct = True  # --no-direct-io turns it off


class Sink(Protocol):
    fd: int  # an ordinary descriptor of the file (fsync)

    def append(self, chunks: Sequence[bytes], offset: int) -> Future[None] | None:
        """Write ``chunks`` at ``offset``, the end of what was appended so far: at once
        (None), or in the background (the future; the chunks must stay as they are until
        it is done)."""

    def write_through(self, offset: int) -> None:
        """Have every byte below ``offset`` in the file (not yet durable: fsync that)."""

    def after_sync(self, durable: int) -> None:
        """The bytes below ``durable`` are now on disk."""

    def truncate(self, offset: int) -> None:
        """Drop the bytes from ``offset`` on (never below what was made durable)."""

    def close(self) -> None: ...


def _write_all(fd: int, chunks: Sequence[bytes], offset: int) -> None:
    pending = list(chunks)
    while pending:
        count = os.pwritev(fd, pending[:IOV_MAX], offset)
        offset += count
        pending = _drop_written(pending, count)


def _drop_written(chunks: list[bytes], count: int) -> list[bytes]:
    """The chunks still to write after ``count`` bytes went out (short writes happen)."""
    for index, chunk in enumerate(chunks):
        if count < len(chunk):
            return [memoryview(chunk)[count:], *chunks[index + 1 :]]  # type: ignore[list-item]
        count -= len(chunk)
    return []


class BufferedSink:
    def __init__(self, fd: int, offset: int):
        self.fd = fd
        self._unstarted_from = offset  # the first byte whose disk write was not started
        self._released_to = 0  # page cache dropped below this offset

    def append(self, chunks: Sequence[bytes], offset: int) -> None:
        _write_all(self.fd, chunks, offset)
        end = offset + sum(len(chunk) for chunk in chunks)
        if end - self._unstarted_from >= WRITEBACK_WINDOW:
            start_writeback(self.fd, self._unstarted_from, end - self._unstarted_from)
            self._unstarted_from = end
        return None

    def write_through(self, offset: int) -> None:
        pass  # every appended byte is in the file already

    def after_sync(self, durable: int) -> None:
        # Clean pages nobody reads again (see store/writeback.py).
        if durable > self._released_to:
            drop_cached(self.fd, self._released_to, durable - self._released_to)
            self._released_to = durable

    def truncate(self, offset: int) -> None:
        os.ftruncate(self.fd, offset)
        self._unstarted_from = min(self._unstarted_from, offset)

    def close(self) -> None:
        os.close(self.fd)


class DirectSink:
    def __init__(self, fd: int, direct_fd: int, offset: int):
        self.fd = fd  # ordinary descriptor: carried bytes, truncation, fsync
        self.direct_fd = direct_fd
        self._write_fd = direct_fd  # becomes ``fd`` if the filesystem refuses a direct write
        self._lock = threading.Lock()
        self._load_carry(offset)

    def _load_carry(self, offset: int) -> None:
        # The bytes between the last 4 KiB boundary and ``offset`` are already in the file
        # (committed): read them back so that the next direct write can start aligned.
        self._carry_from = offset - offset % ALIGN
        self._in_file = offset  # bytes below this are in the file, one way or the other
        self._carry = os.pread(self.fd, offset - self._carry_from, self._carry_from)
        if self._carry_from + len(self._carry) != offset:
            raise OSError(errno.EIO, "partial file is shorter than its committed offset")

    def append(self, chunks: Sequence[bytes], offset: int) -> Future[None]:
        # The block thread hashes while another thread copies and waits for the disk.
        return _disk_writers().submit(self._append, chunks, offset)

    def _append(self, chunks: Sequence[bytes], offset: int) -> None:
        with self._lock:
            end = self._carry_from + len(self._carry)
            if offset != end:
                raise ValueError(f"append at {offset}, the file ends at {end}")
            filled = len(self._carry) + sum(len(chunk) for chunk in chunks)
            buffer = _aligned_buffer(filled)
            buffer[: len(self._carry)] = self._carry
            position = len(self._carry)
            for chunk in chunks:
                buffer[position : position + len(chunk)] = chunk
                position += len(chunk)
            whole = filled - filled % ALIGN
            if whole:
                with memoryview(buffer) as view, view[:whole] as aligned:
                    self._write_aligned(aligned)
                self._carry_from += whole
                self._in_file = max(self._in_file, self._carry_from)
            self._carry = buffer[whole:filled]

    def _write_aligned(self, view: memoryview) -> None:
        written = 0
        while written < len(view):
            try:
                written += os.pwrite(self._write_fd, view[written:], self._carry_from + written)
            except OSError as error:
                # Opened with O_DIRECT but refused at the first write (an alignment larger
                # than 4 KiB): the rest goes through the page cache.
                if error.errno != errno.EINVAL or self._write_fd == self.fd:
                    raise
                self._write_fd = self.fd

    def write_through(self, offset: int) -> None:
        with self._lock:
            if offset <= self._in_file:
                return
            end = self._carry_from + len(self._carry)
            if not self._carry_from <= offset <= end:
                raise ValueError(f"bytes below {offset} are no longer held")
            held = self._carry[self._in_file - self._carry_from : offset - self._carry_from]
            _write_all(self.fd, [held], self._in_file)
            self._in_file = offset

    def after_sync(self, durable: int) -> None:
        pass  # no page cache to hand back

    def truncate(self, offset: int) -> None:
        with self._lock:
            os.ftruncate(self.fd, offset)
            self._load_carry(offset)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.direct_fd)
        os.close(self.fd)


_writers: ThreadPoolExecutor | None = None
_writers_lock = threading.Lock()
_buffers = threading.local()


def _aligned_buffer(size: int) -> mmap.mmap:
    """This disk-writer thread's page-aligned buffer, of at least ``size`` bytes: one per
    thread, not one per upload, so memory does not grow with the uploads open at once."""
    buffer: mmap.mmap | None = getattr(_buffers, "buffer", None)
    if buffer is None or len(buffer) < size:
        if buffer is not None:
            buffer.close()
        buffer = mmap.mmap(-1, -(-size // ALIGN) * ALIGN)
        _buffers.buffer = buffer
    return buffer


def _disk_writers() -> ThreadPoolExecutor:
    """The process's threads that wait for direct writes (made on first use, after a fork)."""
    global _writers
    if _writers is None:
        from .uploads import block_threads  # here: uploads imports this module

        with _writers_lock:
            if _writers is None:
                # One per block thread, each of which waits for one write at a time; the
                # pool makes them as they are needed.
                _writers = ThreadPoolExecutor(block_threads(), thread_name_prefix="disk-write")
    return _writers


def _forget_writers() -> None:
    global _writers, _writers_lock
    _writers, _writers_lock = None, threading.Lock()  # the parent's threads are not here


os.register_at_fork(after_in_child=_forget_writers)


def set_direct(enabled: bool) -> None:
    """Write straight to the disk where the filesystem takes it (this process, and the
    workers it forks later), or always through the page cache."""
    global _direct
    _direct = enabled


def direct_wanted() -> bool:
    return O_DIRECT is not None and _direct


def describe(directory: str | os.PathLike[str]) -> str:
    """How partial files in ``directory`` are written, for the startup log."""
    buffered = "through the page cache with write-behind " + (
        "(sync_file_range)" if writeback.available() else "off (not on Linux)"
    )
    if not direct_wanted():
        return buffered + ("" if O_DIRECT is None else "; direct I/O off (--no-direct-io)")
    existing = Path(directory).absolute()
    while not existing.is_dir() and existing != existing.parent:
        existing = existing.parent  # not made yet: its filesystem is the parent's
    try:
        fd, probe = tempfile.mkstemp(prefix=".direct-io-probe-", dir=existing)
    except OSError:
        return "straight to the disk (O_DIRECT) where the filesystem takes it"
    try:
        os.close(os.open(probe, os.O_WRONLY | O_DIRECT))  # type: ignore[operator]
    except OSError as error:
        return buffered + f"; O_DIRECT refused here ({os.strerror(error.errno or 0)})"
    finally:
        os.close(fd)
        os.unlink(probe)
    return "straight to the disk (O_DIRECT, 4 KiB aligned)"


def open_sink(path: str | os.PathLike[str], offset: int) -> Sink:
    """A sink for the file at ``path``, whose ``offset`` bytes are kept."""
    fd = os.open(path, os.O_RDWR)  # read too: the carried bytes on reopening
    try:
        # Bytes past the committed offset (a crashed or displaced writer) are not ours.
        if os.fstat(fd).st_size != offset:
            os.ftruncate(fd, offset)
        if direct_wanted():
            assert O_DIRECT is not None
            try:
                direct_fd = os.open(path, os.O_WRONLY | O_DIRECT)
            except OSError as error:
                if error.errno != errno.EINVAL:
                    raise
            else:
                try:
                    return DirectSink(fd, direct_fd, offset)
                except BaseException:
                    os.close(direct_fd)
                    raise
        return BufferedSink(fd, offset)
    except BaseException:
        os.close(fd)
        raise
