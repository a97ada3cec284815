"""protocol.headers, protocol.errors and protocol.extensions: examples and properties."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import errors
from protocol.errors import (
    BadRequest,
    PreconditionFailed,
    ServiceUnavailable,
    TusError,
    UnsupportedMediaType,
)
from protocol.extensions import ALL_EXTENSIONS, advertised
from protocol.headers import (
    MAX_OFFSET,
    SUPPORTED_CHECKSUMS,
    SUPPORTED_VERSIONS,
    TUS_VERSION,
    Concat,
    check_patch_content_type,
    check_tus_resumable,
    parse_checksum,
    parse_concat,
    parse_creation_length,
    parse_length,
    parse_method_override,
    parse_offset,
)
from tests.refusals import refusal

SHA1_B64 = base64.b64encode(b"\x01" * 20).decode()
MD5_B64 = base64.b64encode(b"\x02" * 16).decode()

# Any text a client could put in a header: Unicode, latin-1 bytes, lone surrogates
# (aiohttp decodes undecodable bytes with surrogateescape), and header-ish alphabets
# that reach past the first check.
ANY_TEXT = st.one_of(
    st.text(),
    st.binary().map(lambda raw: raw.decode("latin-1")),
    st.text(st.one_of(st.characters(), st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF))),
    st.text(alphabet="0123456789 \t+-_abcdef;/:.,=final partial\r\n"),
)


def assert_parses_or_refuses(call: Callable[..., Any], *args: Any) -> None:
    try:
        call(*args)
    except TusError as error:
        assert 400 <= error.status <= 499
        assert error.reason.isprintable()


# --- errors -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("error_class", "status"),
    [
        (errors.BadRequest, 400),
        (errors.Unauthorized, 401),
        (errors.Forbidden, 403),
        (errors.NotFound, 404),
        (errors.Conflict, 409),
        (errors.Gone, 410),
        (errors.PreconditionFailed, 412),
        (errors.PayloadTooLarge, 413),
        (errors.UnsupportedMediaType, 415),
        (errors.Locked, 423),
        (errors.ChecksumMismatch, 460),
        (errors.ServiceUnavailable, 503),
        (errors.InsufficientStorage, 507),
    ],
)
def test_error_status(error_class: type[TusError], status: int) -> None:
    error = error_class("why")
    assert error.status == status
    assert error.reason == "why"
    assert isinstance(error, TusError)


def test_error_reason_is_one_printable_line() -> None:
    error = BadRequest("bad\r\nSet-Cookie: x=1\x00\u2028end")
    assert error.reason == "bad\\r\\nSet-Cookie: x=1\\x00\\u2028end"
    assert str(error) == error.reason


def test_error_reason_is_truncated() -> None:
    error = BadRequest("x" * 10_000)
    assert len(error.reason) <= errors.MAX_REASON_LENGTH
    assert error.reason.endswith("...")


def test_error_headers_are_copied() -> None:
    given_headers = {"X-A": "1"}
    error = BadRequest("why", given_headers)
    error.headers["X-B"] = "2"
    assert given_headers == {"X-A": "1"}


def test_precondition_failed_always_names_tus_version() -> None:
    assert PreconditionFailed("x").headers == {"Tus-Version": "1.0.0"}
    assert PreconditionFailed("x", {"Tus-Version": "0.2"}).headers["Tus-Version"] == "1.0.0"
    assert PreconditionFailed.tus_version == TUS_VERSION


def test_service_unavailable_sets_retry_after() -> None:
    assert ServiceUnavailable("busy").headers == {"Retry-After": "5"}
    assert ServiceUnavailable("busy", retry_after=30).headers == {"Retry-After": "30"}


def test_generic_error_status_override() -> None:
    assert TusError("method not allowed", status=405).status == 405


@given(ANY_TEXT)
def test_any_reason_becomes_one_printable_line(text: str) -> None:
    reason = BadRequest(text).reason
    assert reason.isprintable()
    assert len(reason) <= errors.MAX_REASON_LENGTH


# --- Tus-Resumable ----------------------------------------------------------


def test_tus_resumable_accepts_supported_version() -> None:
    assert SUPPORTED_VERSIONS == (TUS_VERSION,)
    check_tus_resumable("1.0.0")
    check_tus_resumable(" 1.0.0\t")


@pytest.mark.parametrize("value", [None, "", "0.2.2", "1.0", "1.0.0,0.2.2", "1.0.0\n"])
def test_tus_resumable_refused(value: str | None) -> None:
    error = refusal(check_tus_resumable, value)
    assert isinstance(error, PreconditionFailed)
    assert error.status == 412
    assert error.headers["Tus-Version"] == "1.0.0"
    assert "Tus-Resumable" in error.reason


# --- Upload-Offset / Upload-Length -----------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", 0),
        ("42", 42),
        (" 42\t", 42),
        ("007", 7),
        ("0" * 50 + "1", 1),
        (str(MAX_OFFSET), MAX_OFFSET),
    ],
)
def test_offset_and_length_parse(value: str, expected: int) -> None:
    assert parse_offset(value) == expected
    assert parse_length(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        " ",
        "-1",
        "+1",
        "1.0",
        "1e3",
        "1_000",
        "1 000",
        "0x10",
        "abc",
        "١٢",  # Arabic-Indic digits: int() accepts them, the grammar does not
        "12\n",
        "\n12",
        "\xa012",
        str(MAX_OFFSET + 1),
        "9" * 5000,  # longer than int()'s default digit limit
    ],
)
@pytest.mark.parametrize(
    ("parse", "header"), [(parse_offset, "Upload-Offset"), (parse_length, "Upload-Length")]
)
def test_offset_and_length_refused(
    parse: Callable[[str | None], int], header: str, value: str | None
) -> None:
    error = refusal(parse, value)
    assert error.status == 400
    assert header in error.reason


@given(st.integers(min_value=0, max_value=MAX_OFFSET))
def test_offset_round_trip(number: int) -> None:
    assert parse_offset(str(number)) == number
    assert parse_length(str(number)) == number


@given(st.integers(min_value=MAX_OFFSET + 1))
def test_offset_beyond_int64_refused(number: int) -> None:
    assert refusal(parse_offset, str(number)).status == 400


@given(ANY_TEXT)
def test_offset_and_length_never_crash(text: str) -> None:
    assert_parses_or_refuses(parse_offset, text)
    assert_parses_or_refuses(parse_length, text)


# --- creation length --------------------------------------------------------


def test_creation_length() -> None:
    assert parse_creation_length("10", None) == 10
    assert parse_creation_length(None, "1") is None
    assert parse_creation_length(None, " 1 ") is None


@pytest.mark.parametrize(
    ("upload_length", "defer_length", "mention"),
    [
        ("10", "1", "Upload-Defer-Length"),
        (None, None, "Upload-Length"),
        (None, "0", "Upload-Defer-Length"),
        (None, "true", "Upload-Defer-Length"),
        (None, "", "Upload-Defer-Length"),
        ("-1", None, "Upload-Length"),
    ],
)
def test_creation_length_refused(
    upload_length: str | None, defer_length: str | None, mention: str
) -> None:
    error = refusal(parse_creation_length, upload_length, defer_length)
    assert error.status == 400
    assert mention in error.reason


@given(st.one_of(st.none(), ANY_TEXT), st.one_of(st.none(), ANY_TEXT))
def test_creation_length_never_crashes(upload_length: str | None, defer: str | None) -> None:
    assert_parses_or_refuses(parse_creation_length, upload_length, defer)


# --- Content-Type -----------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "application/offset+octet-stream",
        "Application/Offset+Octet-Stream",
        "application/offset+octet-stream; charset=binary",
        " application/offset+octet-stream ;x=y",
    ],
)
def test_patch_content_type_accepted(value: str) -> None:
    check_patch_content_type(value)


@pytest.mark.parametrize(
    "value",
    [None, "", "application/octet-stream", "application/offset+octet-streamx", "text/plain"],
)
def test_patch_content_type_refused(value: str | None) -> None:
    error = refusal(check_patch_content_type, value)
    assert isinstance(error, UnsupportedMediaType)
    assert error.status == 415
    assert "Content-Type" in error.reason


@given(ANY_TEXT)
def test_patch_content_type_never_crashes(text: str) -> None:
    assert_parses_or_refuses(check_patch_content_type, text)


# --- Upload-Checksum --------------------------------------------------------


def test_checksum_parses() -> None:
    assert parse_checksum(f"sha1 {SHA1_B64}") == ("sha1", b"\x01" * 20)
    assert parse_checksum(f"MD5 {MD5_B64}") == ("md5", b"\x02" * 16)
    assert parse_checksum(" crc32 AAAAAA== ") == ("crc32", b"\0" * 4)


@pytest.mark.parametrize("algorithm", SUPPORTED_CHECKSUMS)
def test_checksum_digest_sizes(algorithm: str) -> None:
    size = {"sha1": 20, "md5": 16, "sha256": 32, "crc32": 4}[algorithm]
    digest = bytes(range(size))
    assert parse_checksum(f"{algorithm} {base64.b64encode(digest).decode()}") == (
        algorithm,
        digest,
    )


@pytest.mark.parametrize(
    "value",
    [
        "",
        "sha1",
        f"sha1  {SHA1_B64}",
        f"sha1 {SHA1_B64} extra",
        f"sha512 {SHA1_B64}",
        f"{SHA1_B64}",
        "sha1 not*base64",
        "sha1 AQEBAQEBAQEBAQEBAQEBAQEBAQE",  # padding missing
        f"sha1 {MD5_B64}",  # right base64, wrong digest length
        f"md5 {SHA1_B64}",
        "sha1 ÀÀÀÀ",
        f"sha1\t{SHA1_B64}",
    ],
)
def test_checksum_refused(value: str) -> None:
    error = refusal(parse_checksum, value)
    assert error.status == 400
    assert "Upload-Checksum" in error.reason


@given(ANY_TEXT)
def test_checksum_never_crashes(text: str) -> None:
    assert_parses_or_refuses(parse_checksum, text)


@given(st.sampled_from(SUPPORTED_CHECKSUMS), st.binary())
def test_checksum_accepts_exactly_the_right_digest_length(algorithm: str, digest: bytes) -> None:
    value = f"{algorithm} {base64.b64encode(digest).decode()}"
    size = {"sha1": 20, "md5": 16, "sha256": 32, "crc32": 4}[algorithm]
    if len(digest) == size:
        assert parse_checksum(value) == (algorithm, digest)
    else:
        assert refusal(parse_checksum, value).status == 400


# --- Upload-Concat ----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("partial", Concat("partial", ())),
        (" partial ", Concat("partial", ())),
        ("final;/files/a /files/b", Concat("final", ("/files/a", "/files/b"))),
        ("final; /files/a   /files/b ", Concat("final", ("/files/a", "/files/b"))),
        (
            "final;https://tus.example.org/files/a http://h:1080/files/b?x=1",
            Concat("final", ("https://tus.example.org/files/a", "http://h:1080/files/b?x=1")),
        ),
    ],
)
def test_concat_parses(value: str, expected: Concat) -> None:
    assert parse_concat(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        "Partial",
        "partial;/files/a",
        "final",
        "final;",
        "final;   ",
        "final:/files/a",
        "final;files/a",
        "final;//host/files/a",
        "final;https:/files/a",
        "final;/files/a\t/files/b",
        "final;/files/é",
        "final;/files/a\r\n/files/b",
    ],
)
def test_concat_refused(value: str) -> None:
    error = refusal(parse_concat, value)
    assert error.status == 400
    assert "Upload-Concat" in error.reason


@given(ANY_TEXT)
def test_concat_never_crashes(text: str) -> None:
    assert_parses_or_refuses(parse_concat, text)
    assert_parses_or_refuses(parse_concat, "final;" + text)


# --- X-HTTP-Method-Override -------------------------------------------------


@pytest.mark.parametrize(
    ("method", "override", "expected"),
    [
        ("POST", None, "POST"),
        ("PATCH", None, "PATCH"),
        ("POST", "PATCH", "PATCH"),
        ("POST", "DELETE", "DELETE"),
        ("POST", " HEAD ", "HEAD"),
    ],
)
def test_method_override(method: str, override: str | None, expected: str) -> None:
    assert parse_method_override(method, override) == expected


@pytest.mark.parametrize(
    ("method", "override"),
    [
        ("POST", "GET"),
        ("POST", "POST"),
        ("POST", "patch"),
        ("POST", ""),
        ("PATCH", "DELETE"),
        ("GET", "PATCH"),
    ],
)
def test_method_override_refused(method: str, override: str) -> None:
    error = refusal(parse_method_override, method, override)
    assert error.status == 400
    assert "X-HTTP-Method-Override" in error.reason


@given(ANY_TEXT, st.one_of(st.none(), ANY_TEXT))
def test_method_override_never_crashes(method: str, override: str | None) -> None:
    assert_parses_or_refuses(parse_method_override, method, override)


# --- extensions -------------------------------------------------------------


def test_all_extensions_in_canonical_order() -> None:
    assert ALL_EXTENSIONS == (
        "creation",
        "creation-with-upload",
        "creation-defer-length",
        "termination",
        "checksum",
        "expiration",
        "concatenation",
        "concatenation-unfinished",
    )


def test_advertised_uses_canonical_order() -> None:
    assert advertised(["termination", "creation", "checksum"]) == "creation,termination,checksum"
    assert advertised([]) == ""
    assert advertised(ALL_EXTENSIONS) == ",".join(ALL_EXTENSIONS)


def test_advertised_refuses_unknown_extension() -> None:
    with pytest.raises(ValueError, match="creation-with-magic"):
        advertised(["creation", "creation-with-magic"])
