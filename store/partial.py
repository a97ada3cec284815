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
from .sinks import Sink, open_sink

# Bytes of a file on disk read in one go, to hash it or copy it.
READ_BLOCK = 4 * 1024 * 1024


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

    def copy(self) -> StreamState:
        return StreamState(
            {name: digest.copy() for name, digest in self.digests.items()}, self.scanner.copy()
        )

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
    sink: Sink
    offset: int
    stream: StreamState
    # The request's Upload-Checksum, fed in the same hop as the digests.
    body_checksum: BodyChecksum | None = None
    _closed: bool = field(default=False, repr=False)

    @classmethod
    def open(cls, path: Path, committed_offset: int, stream: StreamState) -> PartialWriter:
        return cls(path, open_sink(path, committed_offset), committed_offset, stream)

    def write(self, chunks: Sequence[bytes]) -> None:
        """Write ``chunks`` at the current offset, hash and scan them, and move the offset
        on. If the write fails, the states still describe the bytes up to the offset."""
        writing = self.sink.append(chunks, self.offset)
        if writing is None:  # written already
            self.stream.hash_all(chunks, self.body_checksum)
            self.stream.scan_all(chunks)
        else:  # hashed and scanned while the disk takes the block
            before = self.stream.copy()
            try:
                self.stream.hash_all(chunks, self.body_checksum)
                self.stream.scan_all(chunks)
            finally:
                try:
                    writing.result()
                except BaseException:
                    self.stream = before
                    raise
        self.offset += sum(len(chunk) for chunk in chunks)

    def discard_to(self, committed_offset: int) -> None:
        """Drop bytes past the committed offset (a chunk that failed its checksum)."""
        self.sink.truncate(committed_offset)
        self.offset = committed_offset

    def sync(self, written_before: int | None = None) -> None:
        """Make the first ``written_before`` bytes (all of them by default) durable: they
        were all written before this call; later blocks may be going in meanwhile. Then
        hand their page cache back, if any (see store/writeback.py)."""
        self.sink.write_through(self.offset if written_before is None else written_before)
        os.fsync(self.sink.fd)
        if written_before is not None:
            self.sink.after_sync(written_before)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.sink.close()
