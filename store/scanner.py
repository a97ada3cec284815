"""Line count, text-or-binary and head of an upload, computed as its bytes stream in.

Every byte is touched once, by ``store/_textscan.c``: it counts newlines and decides
text or binary (control bytes, strict UTF-8) in vectorized C without the GIL, so a scan
runs beside the digests and the event loop (~50 GB/s for newlines, 8 GB/s for ASCII text
on an Intel Xeon). Where the extension was not built, bytes methods do the same (one
``bytes.translate`` keeping control bytes and newlines, ``isascii``, an incremental strict
UTF-8 decode) holding the GIL. The only state carried between chunks is the ≤3 bytes of
a multibyte character cut by a chunk boundary, saved with the rest of the scanner state
between PATCHes. Once a file is known to be binary, only its size and its newlines are
counted (the line count of a binary file is kept, as the KBase staging service reports
it).
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Callable
from dataclasses import dataclass

try:
    from . import _textscan  # type: ignore[attr-defined]
except ImportError:  # built without a C compiler
    _textscan = None

__all__ = [
    "HEAD_CHARS",
    "NOT_TEXT",
    "TAIL_BYTES",
    "TAIL_CHARS",
    "ContentScanner",
    "ScanResult",
    "ScannerStateError",
    "tail_text",
]

HEAD_CHARS = 1024
TAIL_CHARS = 1024
# Bytes to read from the end of a text file for tail_text: up to 4 bytes per character,
# plus up to 3 continuation bytes of a character cut at the start of the window.
TAIL_BYTES = TAIL_CHARS * 4 + 3
NOT_TEXT = "not text file"  # the KBase staging service's words

_STATE_VERSION = 1
_MAX_PENDING = 3  # longest incomplete UTF-8 sequence

# Control bytes that make a file binary.  TAB, LF, VT, FF, CR (0x09-0x0D) and ESC (0x1B)
# are allowed in text.
_CONTROL = bytes([*range(0x00, 0x09), *range(0x0E, 0x1B), *range(0x1C, 0x20)])
# translate(None, delete=_NOT_CONTROL_OR_LF) leaves only control bytes and newlines: one
# pass over the chunk both finds control bytes and counts lines (the result is small).
_NOT_CONTROL_OR_LF = bytes(b for b in range(256) if b not in _CONTROL and b != 0x0A)


class ScannerStateError(ValueError):
    """A saved scanner state is not one this module wrote."""


@dataclass
class ScanResult:
    is_text: bool
    line_count: int  # newlines, plus one for an unterminated last line; binary files too
    head: str  # first HEAD_CHARS characters of a text file, else NOT_TEXT


class ContentScanner:
    """Incremental scan of a file's bytes; its state survives ``state()``/``from_state``."""

    __slots__ = ("_head", "_is_text", "_last_byte", "_newlines", "_pending", "_size")

    def __init__(self) -> None:
        self._size = 0
        self._newlines = 0
        self._is_text = True
        self._pending = b""  # start of a UTF-8 sequence cut by the chunk boundary
        self._head = ""
        self._last_byte: int | None = None

    @property
    def size(self) -> int:
        return self._size

    def copy(self) -> ContentScanner:
        twin = ContentScanner()
        for name in self.__slots__:
            setattr(twin, name, getattr(self, name))  # all immutable values
        return twin

    @property
    def newlines(self) -> int:
        """Count of b"\\n" so far."""
        return self._newlines

    @property
    def is_text(self) -> bool:
        """True while every byte so far is valid UTF-8 (pending bytes aside), no control bytes."""
        return self._is_text

    @property
    def head(self) -> str:
        return self._head

    def update(self, data: bytes | bytearray | memoryview) -> None:
        """Scan the next chunk (1 MiB order; nothing proportional to it is kept)."""
        n = len(data) if not isinstance(data, memoryview) else data.nbytes
        if not n:
            return
        self._size += n
        view = data if not isinstance(data, memoryview) else data.cast("B")
        self._last_byte = view[-1]
        newlines, is_text, cut = scan_chunk(data, self._pending, self._is_text)
        self._newlines += newlines
        if not self._is_text:
            return
        if not is_text:
            self._become_binary()
            return
        if len(self._head) < HEAD_CHARS:
            # The first characters: decoding the whole chunk would build a str of it.
            wanted = (HEAD_CHARS - len(self._head)) * 4
            start = self._pending + bytes(view[:wanted])
            text, _ = codecs.utf_8_decode(start, "strict", False)
            self._head += text[: HEAD_CHARS - len(self._head)]
        self._pending = (self._pending + bytes(view[-_MAX_PENDING:]))[-cut:] if cut else b""

    def _become_binary(self) -> None:
        self._is_text = False
        self._pending = b""
        self._head = ""

    def finish(self) -> ScanResult:
        """The result for a file that ends here (does not change the scanner)."""
        lines = self._newlines + (0 if self._last_byte in (None, 0x0A) else 1)
        # Bytes of an unfinished character at end of file: not valid UTF-8.
        if not self._is_text or self._pending:
            return ScanResult(is_text=False, line_count=lines, head=NOT_TEXT)
        return ScanResult(is_text=True, line_count=lines, head=self._head)

    def state(self) -> bytes:
        """Compact JSON of the scanner (at most a few KiB: the head dominates)."""
        doc = {
            "v": _STATE_VERSION,
            "size": self._size,
            "text": self._is_text,
            "last": self._last_byte,
            "nl": self._newlines,
        }
        if self._is_text:
            doc.update(pend=self._pending.hex(), head=self._head)
        return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")

    @classmethod
    def from_state(cls, state: bytes) -> ContentScanner:
        """The scanner saved by ``state()``; ScannerStateError for anything else."""
        try:
            doc = json.loads(bytes(state).decode("utf-8"))
        except (UnicodeDecodeError, ValueError, TypeError) as exc:
            raise ScannerStateError(f"scanner state is not JSON: {exc}") from None
        if not isinstance(doc, dict) or doc.get("v") != _STATE_VERSION:
            raise ScannerStateError("scanner state has an unknown version")
        size, is_text, last = doc.get("size"), doc.get("text"), doc.get("last")
        if not _is_count(size) or not isinstance(is_text, bool):
            raise ScannerStateError("scanner state has a bad size or text flag")
        if (last is None) != (size == 0) or not (last is None or (_is_count(last) and last < 256)):
            raise ScannerStateError("scanner state has a bad last byte")
        newlines = doc.get("nl")
        if not _is_count(newlines) or newlines > size:
            raise ScannerStateError("scanner state has a bad newline count")
        scanner = cls()
        scanner._size, scanner._is_text, scanner._last_byte = size, is_text, last
        scanner._newlines = newlines
        if is_text:
            pend, head = doc.get("pend"), doc.get("head")
            if not isinstance(head, str) or len(head) > HEAD_CHARS:
                raise ScannerStateError("scanner state has a bad head")
            try:
                pending = bytes.fromhex(pend) if isinstance(pend, str) else None
            except ValueError:
                pending = None
            if pending is None or len(pending) > _MAX_PENDING:
                raise ScannerStateError("scanner state has bad pending bytes")
            scanner._pending, scanner._head = pending, head
        return scanner

    def __repr__(self) -> str:
        kind = "text" if self._is_text else "binary"
        return f"<ContentScanner {kind} size={self._size} newlines={self._newlines}>"


def scan_in_python(
    data: bytes | bytearray | memoryview, pending: bytes, text: bool
) -> tuple[int, bool, int]:
    """What ``_textscan.scan`` computes, with bytes methods (they hold the GIL): newlines in
    ``data``; whether ``pending + data`` is still text (``text`` and no control byte and
    strict UTF-8); the length of the cut character that ends it (0 unless text)."""
    if isinstance(data, memoryview):
        data = data.tobytes()  # translate/count/isascii are bytes methods
    if not text:
        return data.count(b"\n"), False, 0
    kept = data.translate(None, _NOT_CONTROL_OR_LF)
    newlines = kept.count(b"\n")
    if newlines != len(kept):  # something besides newlines: a control byte
        return newlines, False, 0
    if not pending and data.isascii():
        return newlines, True, 0
    whole = pending + data
    try:
        _, consumed = codecs.utf_8_decode(whole, "strict", False)
    except UnicodeDecodeError:
        return newlines, False, 0
    cut = whole[consumed:]
    if cut[:1] == b"\xed" and cut[1:2] >= b"\xa0":
        # A surrogate's first two bytes: CPython waits for the third to refuse them, the
        # C step refuses at once (no byte can make them UTF-8); the verdicts must agree.
        return newlines, False, 0
    return newlines, True, len(cut)


ScanChunk = Callable[[bytes | bytearray | memoryview, bytes, bool], tuple[int, bool, int]]
scan_chunk: ScanChunk = _textscan.scan if _textscan is not None else scan_in_python


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def tail_text(raw_tail: bytes, at_file_start: bool, chars: int = TAIL_CHARS) -> str:
    """The last ``chars`` characters of a text file from its last ``chars * 4 + 3`` bytes.

    ``at_file_start`` says whether ``raw_tail`` begins at offset 0.  When it does not, the
    window may begin inside a character: its leading continuation bytes are dropped.
    The file was validated as UTF-8 already; "replace" only keeps a damaged file from
    failing the metadata write.
    """
    if chars <= 0:
        return ""
    start = 0
    if not at_file_start:
        while start < min(len(raw_tail), _MAX_PENDING) and 0x80 <= raw_tail[start] <= 0xBF:
            start += 1
    return raw_tail[start:].decode("utf-8", "replace")[-chars:]
