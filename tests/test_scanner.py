"""Content scanner: any split, with state saved and loaded between chunks, gives the truth."""

from __future__ import annotations

import io
import itertools
import json
import tracemalloc
from collections.abc import Iterator

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from store import scanner as scanner_module
from store.scanner import (
    HEAD_CHARS,
    NOT_TEXT,
    TAIL_BYTES,
    TAIL_CHARS,
    ContentScanner,
    ScannerStateError,
    ScanResult,
    scan_in_python,
    tail_text,
)

C_STEP = scanner_module._textscan
STEPS = {"c": C_STEP.scan if C_STEP is not None else None, "python": scan_in_python}


@pytest.fixture(autouse=True, scope="module", params=sorted(STEPS))
def chunk_step(request: pytest.FixtureRequest) -> Iterator[str]:
    """Every test of this file runs on the C step and on its bytes-methods stand-in."""
    step = STEPS[request.param]
    if step is None:
        pytest.skip("the scanner's C step is not built here")
    saved = scanner_module.scan_chunk
    scanner_module.scan_chunk = step
    yield request.param
    scanner_module.scan_chunk = saved


CONTROL = set(range(0x00, 0x09)) | set(range(0x0E, 0x1B)) | set(range(0x1C, 0x20))


def reference(data: bytes) -> ScanResult:
    """The scan result computed the obvious way, on the whole file at once."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    # Binary files count their lines too, as the KBase staging service does.
    lines = sum(1 for _ in io.BytesIO(data))
    if text is None or any(b in CONTROL for b in data):
        return ScanResult(is_text=False, line_count=lines, head=NOT_TEXT)
    return ScanResult(is_text=True, line_count=lines, head=text[:HEAD_CHARS])


def chunks_of(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def scan_resuming(pieces: list[bytes]) -> ScanResult:
    scanner = ContentScanner()
    for piece in pieces:
        scanner = ContentScanner.from_state(scanner.state())
        scanner.update(piece)
    return ContentScanner.from_state(scanner.state()).finish()


def scan_once(data: bytes) -> ScanResult:
    scanner = ContentScanner()
    scanner.update(data)
    return scanner.finish()


# Text-like data: mostly valid UTF-8 with multibyte characters and newlines, sometimes a
# control byte or a broken sequence, so both outcomes are well covered.
text_alphabet = st.characters(codec="utf-8", exclude_categories=("Cs",))
texty = st.one_of(
    st.text(alphabet=text_alphabet, max_size=3000).map(lambda s: s.encode("utf-8")),
    st.lists(st.sampled_from(["a", "é", "€", "😀", "\n", "\r\n", "\t", " ", "\x1b", "日本"])).map(
        lambda parts: "".join(parts).encode("utf-8")
    ),
    st.binary(max_size=3000),
    st.tuples(st.text(max_size=2000), st.binary(max_size=4), st.text(max_size=50)).map(
        lambda t: t[0].encode("utf-8", "surrogatepass") + t[1] + t[2].encode("utf-8", "ignore")
    ),
)


@settings(max_examples=400, deadline=None)
@given(data=texty, cuts=st.lists(st.integers(min_value=0, max_value=3000), max_size=15))
def test_any_split_with_save_load_matches_reference(data: bytes, cuts: list[int]) -> None:
    expected = reference(data)
    assert scan_once(data) == expected
    assert scan_resuming(chunks_of(data, cuts)) == expected


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet=text_alphabet, min_size=1, max_size=400), data=st.data())
def test_split_inside_multibyte_characters(text: str, data: st.DataObject) -> None:
    raw = text.encode("utf-8")
    assume(len(raw) > len(text))  # at least one multibyte character
    # Cut at every byte: each chunk is one byte, so every multibyte char is split.
    assert scan_resuming([raw[i : i + 1] for i in range(len(raw))]) == reference(raw)
    cut = data.draw(st.integers(min_value=0, max_value=len(raw)))
    assert scan_resuming([raw[:cut], raw[cut:]]) == reference(raw)


def test_head_is_first_1024_characters_across_chunks() -> None:
    text = "".join(chr(0x4E00 + i % 500) for i in range(3000))  # 3-byte chars
    raw = text.encode("utf-8")
    pieces = [raw[i : i + 1000] for i in range(0, len(raw), 1000)]
    result = scan_resuming(pieces)
    assert result == ScanResult(is_text=True, line_count=1, head=text[:HEAD_CHARS])


@pytest.mark.parametrize(
    ("data", "lines"),
    [
        (b"", 0),
        (b"\n", 1),
        (b"a", 1),
        (b"a\n", 1),
        (b"a\nb", 2),
        (b"a\nb\n", 2),
        (b"\n\n\n", 3),
        (b"a\r\nb\r\n", 2),
        (b"tab\tff\x0cvt\x0bcr\resc\x1b", 1),
    ],
)
def test_line_counts(data: bytes, lines: int) -> None:
    assert scan_once(data) == ScanResult(True, lines, data.decode())


def test_empty_file() -> None:
    scanner = ContentScanner()
    assert scanner.finish() == ScanResult(is_text=True, line_count=0, head="")
    assert ContentScanner.from_state(scanner.state()).finish() == scanner.finish()


@pytest.mark.parametrize("control", sorted(CONTROL))
def test_every_control_byte_makes_binary(control: int) -> None:
    assert scan_once(b"hello" + bytes([control]) + b"\n").is_text is False


@pytest.mark.parametrize("allowed", [0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x1B, 0x7F])
def test_allowed_whitespace_and_escape(allowed: int) -> None:
    assert scan_once(b"x" + bytes([allowed])).is_text is True


@pytest.mark.parametrize(
    "data",
    [
        b"\xff",
        b"abc\xc3",  # incomplete sequence at end of file
        b"abc\xe2\x82",  # incomplete 3-byte sequence at end
        b"\xc0\xaf",  # overlong
        b"\xed\xa0\x80",  # surrogate
        b"\xf4\x90\x80\x80",  # beyond U+10FFFF
        b"a\x80b",  # lone continuation
    ],
)
def test_invalid_utf8_is_binary(data: bytes) -> None:
    assert scan_once(data) == ScanResult(False, 1, NOT_TEXT)
    assert scan_resuming([data[i : i + 1] for i in range(len(data))]) == ScanResult(
        False, 1, NOT_TEXT
    )


def test_binary_counts_size_and_newlines_only() -> None:
    scanner = ContentScanner()
    scanner.update(b"line\n\x00")
    assert not scanner.is_text
    scanner.update(b"\n\n\n")
    scanner.update(memoryview(b"more\n"))
    scanner.update(b"no newline")
    assert scanner.size == 24
    assert scanner.newlines == 5
    assert scanner.head == ""
    state = scanner.state()
    assert len(state) < 100
    restored = ContentScanner.from_state(state)
    assert restored.size == 24 and not restored.is_text
    assert restored.finish() == ScanResult(False, 6, NOT_TEXT)


def test_binary_state_without_newline_count_is_refused() -> None:
    # A state saved before binary files counted newlines: recomputed from the file.
    with pytest.raises(ScannerStateError):
        ContentScanner.from_state(b'{"v":1,"size":3,"text":false,"last":0}')


def test_buffer_kinds() -> None:
    data = "héllo\nwörld\n".encode()
    scanner = ContentScanner()
    scanner.update(bytearray(data[:2]))  # cuts é
    scanner.update(memoryview(data)[2:7])
    scanner.update(memoryview(bytearray(data[7:])))
    assert scanner.finish() == reference(data)
    assert scanner.size == len(data)


def test_state_is_compact() -> None:
    scanner = ContentScanner()
    scanner.update(("é" * 5000 + "\n").encode())
    state = scanner.state()
    assert len(state) < 4 * HEAD_CHARS + 200
    assert json.loads(state)["nl"] == 1


@pytest.mark.parametrize(
    "state",
    [
        b"",
        b"\xff\xfe",
        b"not json",
        b"[]",
        b'{"v":2,"size":0,"text":true,"last":null,"nl":0,"pend":"","head":""}',
        b'{"v":1,"size":-1,"text":true,"last":null,"nl":0,"pend":"","head":""}',
        b'{"v":1,"size":1,"text":1,"last":10,"nl":0,"pend":"","head":""}',
        b'{"v":1,"size":1,"text":true,"last":null,"nl":0,"pend":"","head":""}',
        b'{"v":1,"size":1,"text":true,"last":300,"nl":0,"pend":"","head":""}',
        b'{"v":1,"size":1,"text":true,"last":10,"nl":5,"pend":"","head":""}',
        b'{"v":1,"size":1,"text":true,"last":10,"nl":true,"pend":"","head":""}',
        b'{"v":1,"size":9,"text":true,"last":10,"nl":0,"pend":"c3c3c3c3","head":""}',
        b'{"v":1,"size":9,"text":true,"last":10,"nl":0,"pend":"zz","head":""}',
        b'{"v":1,"size":9,"text":true,"last":10,"nl":0,"pend":"","head":7}',
        b'{"v":1,"size":9,"text":true,"last":10}',
    ],
)
def test_garbage_state_is_refused(state: bytes) -> None:
    with pytest.raises(ScannerStateError):
        ContentScanner.from_state(state)


def test_huge_text_without_newlines_in_constant_memory() -> None:
    # 50 MiB of b"a" and no newline: the old service's line iterator died on this.
    chunk = b"a" * (1 << 20)
    tracemalloc.start()
    try:
        scanner = ContentScanner()
        for _ in range(50):
            scanner.update(chunk)
            scanner = ContentScanner.from_state(scanner.state())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Bounded by the chunk (translate's scratch output), not by the 50 MiB file.
    assert peak < 2 * len(chunk)
    assert scanner.finish() == ScanResult(True, 1, "a" * HEAD_CHARS)
    assert scanner.size == 50 << 20


def test_huge_non_ascii_text_memory_is_bounded_by_chunk() -> None:
    chunk = ("ü" * (1 << 19)).encode()  # 1 MiB, decode path
    tracemalloc.start()
    try:
        scanner = ContentScanner()
        for _ in range(20):
            scanner.update(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * len(chunk)
    assert scanner.finish() == ScanResult(True, 1, "ü" * HEAD_CHARS)


# --- tail_text ----------------------------------------------------------------------------


def window(raw: bytes, chars: int = TAIL_CHARS) -> tuple[bytes, bool]:
    size = chars * 4 + 3
    return raw[-size:], len(raw) <= size


@settings(max_examples=300, deadline=None)
@given(
    text=st.text(alphabet=text_alphabet, max_size=400),
    chars=st.integers(min_value=0, max_value=60),
)
def test_tail_text_matches_decoded_suffix(text: str, chars: int) -> None:
    raw = text.encode("utf-8")
    tail, at_start = window(raw, chars)
    assert tail_text(tail, at_start, chars) == (text[-chars:] if chars else "")


def test_tail_text_cases() -> None:
    assert tail_text(b"", True) == ""
    assert tail_text(b"short\n", True) == "short\n"
    # Window starting inside "€" (e2 82 ac): its continuation bytes are dropped.
    assert tail_text(b"\x82\xacabc", False, chars=3) == "abc"
    assert tail_text(b"\xacxyz", False, chars=2) == "yz"
    # At file start nothing is dropped (and a stray byte is replaced, not fatal).
    assert tail_text(b"\xacxyz", True, chars=10) == "\ufffdxyz"
    text = "€" * 2000
    raw = text.encode()
    assert tail_text(raw[-TAIL_BYTES:], False) == "€" * TAIL_CHARS
    text = "a" * 5000 + "😀" * 1500
    raw = text.encode()
    assert tail_text(raw[-TAIL_BYTES:], False) == "😀" * TAIL_CHARS
