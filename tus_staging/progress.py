"""Progress of a transfer on the terminal, and the numbers of the line that ends it.

On a terminal (stderr is a tty): a bar for the total and one per file in flight, both
moved by every block handed to the socket or written to disk, so they move while one
large request is on the wire. Elsewhere (a log file, a pipe) no bars, whose carriage
returns would only clutter it: the per-file lines and the summary say what happened.
"""

from __future__ import annotations

import sys
import threading
from typing import TextIO

from tqdm import tqdm

from protocol.errors import one_line

UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
NAME_WIDTH = 30


def human_bytes(count: float) -> str:
    """1023 B, 1.0 KiB, 3.5 GiB (binary units, one decimal)."""
    for unit in UNITS:
        digits = 0 if unit == "B" else 1
        # By the value as printed: 1023.95 KiB is 1.0 MiB, not 1024.0 KiB.
        if abs(round(count, digits)) < 1024 or unit == UNITS[-1]:
            return f"{count:.{digits}f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


def printable(text: str) -> str:
    """A name from the server or the disk, safe to print: control characters escaped."""
    return one_line(text, limit=4096)


def _bar(stream: TextIO, total: int, label: str, initial: int, leave: bool) -> tqdm:
    return tqdm(
        total=total, initial=initial, desc=label, unit="B", unit_scale=True,
        unit_divisor=1024, file=stream, leave=leave, dynamic_ncols=True,
    )  # fmt: skip


class Progress:
    """The bars of one command; every method may be called from any thread."""

    def __init__(self, total: int, stream: TextIO | None = None):
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self._lock = threading.Lock()
        self._total = _bar(self.stream, total, "total", 0, leave=True) if self.enabled else None

    def file(self, label: str, size: int, done: int, own_bar: bool) -> FileProgress:
        """A file starting at ``done`` bytes of ``size``; ``own_bar``: show it besides the total."""
        with self._lock:
            bar = None
            if self.enabled and own_bar:
                bar = _bar(self.stream, size, printable(label)[:NAME_WIDTH], done, leave=False)
        self._move(None, done)  # the file's bar starts there already
        return FileProgress(self, bar, done)

    def say(self, line: str) -> None:
        """A line above the bars (or just a line, without them)."""
        with self._lock:
            if self.enabled:
                tqdm.write(line, file=self.stream)
            else:
                print(line, file=self.stream, flush=True)

    def close(self) -> None:
        with self._lock:
            if self._total is not None:
                self._total.close()

    def _move(self, bar: tqdm | None, count: int) -> None:
        with self._lock:
            if bar is not None:
                bar.update(count)
            if self._total is not None:
                self._total.update(count)


class FileProgress:
    def __init__(self, progress: Progress, bar: tqdm | None, position: int):
        self._progress = progress
        self._bar = bar
        self.position = position

    def advance(self, count: int) -> None:
        self.position += count
        self._progress._move(self._bar, count)

    def rewind_to(self, position: int) -> None:
        """Back (or on) to what the server holds, after a request that failed mid-body."""
        self.advance(position - self.position)

    def close(self) -> None:
        if self._bar is not None:
            with self._progress._lock:
                self._bar.close()
