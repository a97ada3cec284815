"""Partial-file I/O and the per-upload stream state (digests + content scanner).

All calls here block: the service runs them in a worker thread, one hop per block.
The partial file is never trusted past the committed offset: it is trimmed to it
every time a writer opens it.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .checksums import BodyChecksum
from .digest import Digest, DigestStateError, ResumableDigest
from .record import UploadRecord
from .scanner import ContentScanner, ScannerStateError
from .writeback import drop_cached, start_writeback

# Bytes of a file on disk read in one go, to hash it or copy it.
READ_BLOCK = 4 * 1024 * 1024


IOV_MAX = 1024  # Linux's limit on buffers per pwritev call
# Bytes written before their disk write is started (store/writeback.py): large enough
# for the filesystem to allocate and submit big extents, small enough that a
# checkpoint's fsync never meets a burst.
WRITEBACK_WINDOW = 16 * 1024 * 1024


def _drop_written(chunks: list[bytes], count: int) -> list[bytes]:
    """The chunks still to write after ``count`` bytes went out (short writes happen)."""
    for index, chunk in enumerate(chunks):
        if count < len(chunk):
            return [memoryview(chunk)[count:], *chunks[index + 1 :]]  # type: ignore[list-item]
        count -= len(chunk)
    return []


def partial_path(upload_dir: Path, upload_id: str) -> Path:
    return upload_dir / f"{upload_id}.part"


def create_partial(path: Path) -> None:
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    os.close(fd)


def remove_partial(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def file_identity(path: Path) -> str:
    return stat_identity(os.stat(path))


def stat_identity(info: os.stat_result) -> str:
    """Device and inode: which file this is, whatever its name."""
    return f"{info.st_dev}:{info.st_ino}"


def read_blocks(path: Path, start: int, end: int, block: int = READ_BLOCK) -> Iterator[bytes]:
    with open(path, "rb", buffering=0) as handle:
        handle.seek(start)
        remaining = end - start
        while remaining > 0:
            data = handle.read(min(block, remaining))
            if not data:
                raise OSError(errno.EIO, f"{path} is shorter than its committed offset")
            remaining -= len(data)
            yield data


@dataclass
class StreamState:
    """Digests and scanner of the committed bytes, restorable on any worker."""

    digests: dict[str, Digest]
    scanner: ContentScanner

    def hash_all(self, chunks: Sequence[bytes], extra: BodyChecksum | None = None) -> None:
        """Feed a block's chunks to the digests (and to ``extra``, a request's own
        checksum). Releases the GIL while hashing."""
        for digest in self.digests.values():
            digest.update_all(chunks)
        if extra is not None:
            for chunk in chunks:
                extra.update(chunk)

    def scan_all(self, chunks: Sequence[bytes]) -> None:
        """Feed a block's chunks to the scanner (once a file is known binary only its
        size and newlines are counted)."""
        for chunk in chunks:
            self.scanner.update(chunk)

    def feed_all(self, chunks: Sequence[bytes]) -> None:
        """Hash and scan a block, one after the other (for passes over a file on disk)."""
        self.hash_all(chunks)
        self.scan_all(chunks)

    def states(self) -> tuple[dict[str, bytes], bytes]:
        """The saved digest states and the scanner state, as the record keeps them."""
        digests = {}
        for name, digest in self.digests.items():
            state = digest.state()
            # A digest without a portable state (no libcrypto) is recomputed next time.
            digests[name] = state if state is not None else b""
        return digests, self.scanner.state()

    @classmethod
    def fresh(cls, digest_names: list[str]) -> StreamState:
        return cls({name: ResumableDigest.new(name) for name in digest_names}, ContentScanner())

    @classmethod
    def restore(cls, record: UploadRecord, digest_names: list[str], path: Path) -> StreamState:
        """Load the saved states; recompute from the partial file when they cannot be used."""
        try:
            digests = {
                name: ResumableDigest.from_state(name, record.digest_states.get(name, b""))
                for name in digest_names
            }
            scanner = ContentScanner.from_state(record.scan_state)
            sizes = {scanner.size, *(digest.length for digest in digests.values())}
            if sizes != {record.offset}:
                raise ScannerStateError("saved states do not match the committed offset")
            return cls(digests, scanner)
        except (DigestStateError, ScannerStateError, ValueError):
            state = cls.fresh(digest_names)
            for block in read_blocks(path, 0, record.offset):
                state.feed_all([block])
            return state


@dataclass
class PartialWriter:
    """An open partial file positioned at the committed offset, plus its stream state."""

    path: Path
    fd: int
    offset: int
    stream: StreamState
    # The request's Upload-Checksum, fed in the same hop as the digests.
    body_checksum: BodyChecksum | None = None
    _closed: bool = field(default=False, repr=False)
    # The first byte whose disk write has not been started (-1: the offset at open).
    _unstarted_from: int = field(default=-1, repr=False)
    _released_to: int = field(default=0, repr=False)  # page cache dropped below this offset

    @classmethod
    def open(cls, path: Path, committed_offset: int, stream: StreamState) -> PartialWriter:
        fd = os.open(path, os.O_WRONLY)
        try:
            # Bytes past the committed offset (a crashed or displaced writer) are not ours.
            if os.fstat(fd).st_size != committed_offset:
                os.ftruncate(fd, committed_offset)
        except BaseException:
            os.close(fd)
            raise
        return cls(path, fd, committed_offset, stream)

    def write(self, chunks: Sequence[bytes]) -> None:
        """Write ``chunks`` at the current offset, hash and scan them, and move the offset
        on. If the write fails, nothing was hashed or scanned: the states still describe
        the bytes up to the offset."""
        size = sum(len(chunk) for chunk in chunks)
        written = 0
        pending = list(chunks)
        while pending:
            written_now = os.pwritev(self.fd, pending[:IOV_MAX], self.offset + written)
            written += written_now
            pending = _drop_written(pending, written_now)
        self._start_writeback(self.offset + size)
        self.stream.hash_all(chunks, self.body_checksum)
        self.stream.scan_all(chunks)
        self.offset += size

    def _start_writeback(self, end: int) -> None:
        if self._unstarted_from < 0:
            self._unstarted_from = self.offset
        if end - self._unstarted_from >= WRITEBACK_WINDOW:
            start_writeback(self.fd, self._unstarted_from, end - self._unstarted_from)
            self._unstarted_from = end

    def discard_to(self, committed_offset: int) -> None:
        """Drop bytes past the committed offset (a chunk that failed its checksum)."""
        os.ftruncate(self.fd, committed_offset)
        self.offset = committed_offset
        self._unstarted_from = min(self._unstarted_from, committed_offset)

    def sync(self, written_before: int | None = None) -> None:
        """fsync; then drop the page cache of the first ``written_before`` bytes, all of
        them written before this call and now clean (see store/writeback.py)."""
        os.fsync(self.fd)
        if written_before is not None and written_before > self._released_to:
            drop_cached(self.fd, self._released_to, written_before - self._released_to)
            self._released_to = written_before

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            os.close(self.fd)
