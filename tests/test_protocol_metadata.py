"""protocol.metadata: the Upload-Metadata codec."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.errors import TusError
from protocol.metadata import decode_metadata, encode_metadata, metadata_text
from tests.refusals import refusal

VALID_KEYS = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters=","), min_size=1
)
ANY_TEXT = st.one_of(
    st.text(),
    st.binary().map(lambda raw: raw.decode("latin-1")),
    st.text(st.one_of(st.characters(), st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF))),
    st.text(alphabet="abAB019+/= ,\t\r\n"),
)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, {}),
        ("", {}),
        ("  \t", {}),
        ("filename d29ybGQudHh0", {"filename": b"world.txt"}),
        (
            "filename d29ybGQudHh0,is_confidential",
            {"filename": b"world.txt", "is_confidential": b""},
        ),
        ("a YQ==, b Yg==", {"a": b"a", "b": b"b"}),
        (" a YQ== ,\tb ", {"a": b"a", "b": b""}),  # tus-js-client sends "b " for ""
        ("bin AP8=", {"bin": b"\x00\xff"}),
    ],
)
def test_decode(header: str | None, expected: dict[str, bytes]) -> None:
    assert decode_metadata(header) == expected


@pytest.mark.parametrize(
    "header",
    [
        ",",
        "a YQ==,",
        ",a YQ==",
        "a YQ==,,b Yg==",
        "a  YQ==",
        "a YQ== Yg==",
        "a YQ",  # padding missing
        "a Y*Q=",
        "a YQ==\n",
        "a YQ==,a Yg==",
        "a,a",
        "ké YQ==",
        "k\x00 YQ==",
        "a ÀÀÀÀ",
        "a\tYQ==",
    ],
)
def test_decode_refused(header: str) -> None:
    error = refusal(decode_metadata, header)
    assert error.status == 400
    assert "Upload-Metadata" in error.reason


def test_encode() -> None:
    assert encode_metadata({}) == ""
    assert encode_metadata({"filename": b"world.txt", "flag": b""}) == (
        "filename d29ybGQudHh0,flag"
    )


@pytest.mark.parametrize("key", ["", "a b", "a,b", "ké", "a\n"])
def test_encode_refuses_invalid_key(key: str) -> None:
    with pytest.raises(ValueError):
        encode_metadata({key: b"x"})


def test_metadata_text() -> None:
    metadata = {"filename": "résumé.txt".encode(), "bad": b"\xff\xfe", "empty": b""}
    assert metadata_text(metadata, "filename") == "résumé.txt"
    assert metadata_text(metadata, "empty") == ""
    assert metadata_text(metadata, "missing") is None
    error = refusal(metadata_text, metadata, "bad")
    assert error.status == 400
    assert "metadata 'bad'" in error.reason and "UTF-8" in error.reason


def test_metadata_text_refuses_encoded_surrogate() -> None:
    # CESU-style surrogate halves are not UTF-8, however lenient decoders treat them.
    assert refusal(metadata_text, {"k": b"\xed\xa0\x80"}, "k").status == 400


@given(st.dictionaries(VALID_KEYS, st.binary()))
def test_round_trip(metadata: dict[str, bytes]) -> None:
    assert decode_metadata(encode_metadata(metadata)) == metadata


@given(ANY_TEXT)
def test_decode_never_crashes(text: str) -> None:
    try:
        metadata = decode_metadata(text)
    except TusError as error:
        assert 400 <= error.status <= 499
        assert error.reason.isprintable()
    else:
        assert all(isinstance(value, bytes) for value in metadata.values())


@given(st.dictionaries(st.text(), st.binary()), st.text())
def test_metadata_text_never_crashes(metadata: dict[str, bytes], key: str) -> None:
    try:
        metadata_text(metadata, key)
    except TusError as error:
        assert error.status == 400
