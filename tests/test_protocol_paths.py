"""The one path policy (protocol/paths.py) and upload destinations built with it."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from pathlib import PurePosixPath
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.destination import upload_destination
from protocol.errors import BadRequest, TusError
from protocol.paths import MAX_DEPTH, area_path, check_name
from tests.refusals import refusal as one_line_refusal

ANY_TEXT = st.one_of(
    st.text(),
    st.binary().map(lambda raw: raw.decode("latin-1")),
    st.text(st.one_of(st.characters(), st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF))),
    st.text(alphabet="ab./\\ :C\t\x00\u2028"),
)
FORBIDDEN_CATEGORIES = {"Cc", "Zl", "Zp", "Cs"}


def refusal(call: Callable[..., Any], *args: Any) -> TusError:
    """Destinations are refused with 400 (BadRequest) and a one-line reason."""
    error = one_line_refusal(call, *args)
    assert isinstance(error, BadRequest)
    assert error.status == 400
    return error


# --- check_name ----------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "data.csv",
        "résumé.txt",
        "trailing space ",
        ".hidden",
        "...",
        "a" * 255,
        "é" * 127,  # 254 bytes
        "emoji 👩‍👩‍👧.txt",  # zero-width joiners (Cf) are part of ordinary names
        "می\u200cخواهم.txt",  # a zero-width non-joiner inside a Persian word
        "c:x",  # a drive only where a path starts (see area_path)
    ],
)
def test_filename_accepted(name: str) -> None:
    assert check_name(name, field="filename") == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        ".",
        "..",
        "a/b",
        "/etc/passwd",
        "a\\b",
        "..\\..\\x",
        "a\x00b",
        "a\nb",
        "a\rb",
        "tab\there",
        "a\x7fb",
        "a\x85b",  # NEL
        "a\u2028b",
        "a\u2029b",
        "\udcffx",
        " leading",
        "\tleading",
        "\u3000leading",
        "a" * 256,
        "é" * 128,  # 256 bytes
        "evil\u202etxt.exe",  # right-to-left override
        "\u2066x\u2069",  # isolates
        "a\u200bb",  # zero-width space
        "a\u2060b",  # word joiner
        "\ufeffbom",
        "soft\u00adhyphen",
        "\u200dlead",  # a joiner with nothing visible before it
        "tail\u200c",
        "a\u200d b",
        "\u3164",  # Hangul filler: a letter that shows nothing
        "a\u2800b",  # braille blank
        "a\u2215b",
        "\uff0e\uff0e",
    ],
)
def test_filename_refused(name: str) -> None:
    assert "filename" in refusal(lambda: check_name(name, field="filename")).reason


def test_filename_reason_names_its_field() -> None:
    assert "name" in refusal(lambda: check_name("", field="name")).reason


# --- area_path -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("", "."),
        (".", "."),
        ("a", "a"),
        ("a/b/c", "a/b/c"),
        ("a//b///c/", "a/b/c"),
        ("./a/./b/.", "a/b"),
        ("a /b ", "a /b "),
        ("...", "..."),
        ("a..b/c..", "a..b/c.."),
        ("é/ü", "é/ü"),
        ("CC:/x", "CC:/x"),
        ("a/C:/b", "a/C:/b"),
        # A leading "/" is the home, as the staging routes and KBase's front end send it.
        ("/", "."),
        ("/x", "x"),
        ("//x/y", "x/y"),
        ("/".join(["d"] * MAX_DEPTH), "/".join(["d"] * MAX_DEPTH)),
    ],
)
def test_relative_dir_accepted(path: str, expected: str) -> None:
    assert area_path(path) == PurePosixPath(expected)


@pytest.mark.parametrize(
    "path",
    [
        "\\x",
        "C:\\x",
        "C:/x",
        "c:x",
        "..",
        "../x",
        "a/../b",
        "a/..",
        "a\\b",
        "a\x00/b",
        "a/\nb",
        "a/b\u2029",
        "a/ b",
        " a",
        "\ud800",
        "a/" + "b" * 256,
        "/".join(["a" * 200] * 21),  # > 4096 bytes
        "/".join(["d"] * (MAX_DEPTH + 1)),
        "x/\u202eb",
    ],
)
def test_relative_dir_refused(path: str) -> None:
    refusal(area_path, path)


def test_relative_dir_reason_names_its_field() -> None:
    assert "destPath" in refusal(lambda: area_path("../x", field="destPath")).reason


# --- upload_destination --------------------------------------------------------


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ({"filename": b"f.txt"}, "f.txt"),
        ({"name": b"f.txt"}, "f.txt"),
        ({"filename": b"f.txt", "name": b"other.txt"}, "f.txt"),
        ({"filename": b"f.txt", "destPath": b"a/b"}, "a/b/f.txt"),
        ({"filename": b"f.txt", "destPath": b""}, "f.txt"),
        ({"filename": b"f.txt", "relativePath": b"null"}, "f.txt"),
        ({"filename": b"f.txt", "relativePath": b"f.txt"}, "f.txt"),
        ({"filename": b"f.txt", "relativePath": b"folder/sub/f.txt"}, "folder/sub/f.txt"),
        # Uppy's drop-folder form: FileSystemEntry.fullPath, rooted at the drop.
        ({"filename": b"f.txt", "relativePath": b"/folder/sub/f.txt"}, "folder/sub/f.txt"),
        ({"filename": b"f.txt", "destPath": b"d", "relativePath": b"r/f.txt"}, "d/f.txt"),
        ({"filename": "é.txt".encode(), "destPath": "ü".encode()}, "ü/é.txt"),
        ({"filename": b"f.txt", "destPath": b"/abs"}, "abs/f.txt"),
        ({"filename": b"f.txt", "destPath": b"/"}, "f.txt"),
    ],
)
def test_upload_destination(metadata: dict[str, bytes], expected: str) -> None:
    assert upload_destination(metadata) == PurePosixPath(expected)


@pytest.mark.parametrize(
    ("metadata", "mention"),
    [
        ({}, "filename"),
        ({"type": b"text/plain"}, "filename"),
        ({"filename": b""}, "filename"),
        ({"filename": b"", "name": b"f.txt"}, "filename"),
        ({"name": b"a/b"}, "name"),
        ({"filename": b"\xff.txt"}, "filename"),
        ({"filename": b"f.txt", "destPath": b"\xff"}, "destPath"),
        ({"filename": b"f.txt", "destPath": b"../up"}, "destPath"),
        ({"filename": b"f.txt", "relativePath": b"../up/f.txt"}, "relativePath"),
        ({"filename": b"f.txt", "relativePath": b"a\\b\\f.txt"}, "relativePath"),
        ({"filename": b"f.txt", "relativePath": b"\xff/f.txt"}, "relativePath"),
        ({"filename": b"f.txt", "destPath": b"/".join([b"a" * 255] * 16)}, "destination"),
        ({"filename": b"c:x"}, "destination"),
        ({"filename": b"f.txt", "destPath": "a/\u202e".encode()}, "destPath"),
    ],
)
def test_upload_destination_refused(metadata: dict[str, bytes], mention: str) -> None:
    assert mention in refusal(upload_destination, metadata).reason


# --- properties ----------------------------------------------------------------


def assert_safe_relative(path: PurePosixPath) -> None:
    assert not path.is_absolute()
    assert ".." not in path.parts
    text = str(path)
    assert "\\" not in text
    assert not any(unicodedata.category(char) in FORBIDDEN_CATEGORIES for char in text)
    assert all(not part[0].isspace() for part in path.parts)
    for part in path.parts:
        for index, char in enumerate(part):
            if unicodedata.category(char) == "Cf":
                # Only joiners, and only between two visible characters.
                assert char in "\u200c\u200d" and 0 < index < len(part) - 1


@given(ANY_TEXT)
def test_filename_is_safe_or_refused(name: str) -> None:
    try:
        result = check_name(name)
    except BadRequest:
        return
    assert result == name
    assert PurePosixPath(name).parts == (name,)
    assert_safe_relative(PurePosixPath(name))
    assert len(name.encode("utf-8")) <= 255


@given(ANY_TEXT)
def test_relative_dir_is_safe_or_refused(path: str) -> None:
    try:
        result = area_path(path)
    except BadRequest:
        return
    assert_safe_relative(result)


@given(
    st.dictionaries(
        st.sampled_from(["filename", "name", "destPath", "relativePath", "type"]),
        st.one_of(st.binary(), ANY_TEXT.map(lambda text: text.encode("utf-8", "surrogatepass"))),
    )
)
def test_upload_destination_is_safe_or_refused(metadata: dict[str, bytes]) -> None:
    try:
        result = upload_destination(metadata)
    except BadRequest:
        return
    assert_safe_relative(result)
    assert result.name not in ("", ".", "..")
