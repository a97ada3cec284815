"""Write-behind: start the disk write of freshly written bytes at once (for partial files
written through the page cache, store/sinks.py's buffered sink).

Left alone, the kernel lets gigabytes of an upload sit dirty in the page cache (24 GB of
RAM here) and the next checkpoint's fsync then flushes them in one burst. Every other
fsync on the disk waits behind that burst — Redis's append-only fsync among them, and
with ``appendfsync always`` Redis answers nobody while it waits, so a HEAD stalls for
as long as the burst lasts. Starting writeback every few MiB written (``sync_file_range``
with ``SYNC_FILE_RANGE_WRITE``, as PostgreSQL's ``*_flush_after`` settings do; the
window is ``partial.WRITEBACK_WINDOW``) keeps the
dirty backlog to what the disk is writing right now: checkpoint fsyncs find little
left to do and the disk queue stays short. It does not wait for the write to finish,
and it is not a durability step: the checkpoint's fsync still is.

Once a checkpoint's fsync has made a range durable, its pages are clean and nobody will
read them again (digests, line count and head were taken as the bytes streamed in, the
tail is 4 KiB): :func:`drop_cached` hands them back (``POSIX_FADV_DONTNEED``), as
``dd oflag=nocache`` does. An upload of hundreds of GB then holds at most a checkpoint or
two of page cache instead of pushing everything else out of memory. On an AMD EPYC
VM it also turned a single upload's throughput from alternating 370/600 MB/s into a
steady 600–640: there, filling memory the guest had never touched costs far more than
recycling pages.

Linux only; elsewhere (or if the call fails) it does nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
from collections.abc import Callable

SYNC_FILE_RANGE_WRITE = 2


def _load() -> Callable[[int, int, int], None] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        function = ctypes.CDLL(name, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_uint]
    function.restype = ctypes.c_int

    def start(fd: int, offset: int, size: int) -> None:
        # A failure only loses the smoothing (the fsync still makes the bytes durable).
        function(fd, offset, size, SYNC_FILE_RANGE_WRITE)

    return start


_start = _load() if os.uname().sysname == "Linux" else None


def available() -> bool:
    return _start is not None


def drop_cached(fd: int, offset: int, size: int) -> None:
    """Drop the (clean) cached pages of ``size`` bytes at ``offset``: a hint, never fatal."""
    advise = getattr(os, "posix_fadvise", None)
    if advise is not None and size > 0:
        with contextlib.suppress(OSError):
            advise(fd, offset, size, os.POSIX_FADV_DONTNEED)


def start_writeback(fd: int, offset: int, size: int) -> None:
    """Ask the kernel to start writing ``size`` bytes at ``offset`` of ``fd`` to disk."""
    if _start is not None and size > 0:
        _start(fd, offset, size)
