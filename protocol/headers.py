"""The tus 1.0.0 request-header grammar, written once.

Each parser takes the raw header value (None when the header is absent) and returns
a plain Python value or raises a `TusError` whose reason names the header. Values may
come from any bytes a client sent, so nothing here trusts them to be ASCII.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, TypeVar

from protocol.errors import BadRequest, PreconditionFailed, UnsupportedMediaType, quoted

TUS_VERSION = "1.0.0"
SUPPORTED_VERSIONS: tuple[str, ...] = ("1.0.0",)
OFFSET_OCTET_STREAM = "application/offset+octet-stream"

# RFC 9110 optional whitespace: only SP and HTAB, never other Unicode spaces.
OWS = " \t"
# Offsets and lengths are stored as signed 64-bit integers (Redis, file offsets).
MAX_OFFSET = 2**63 - 1
_DIGITS = re.compile(r"[0-9]+")
_MAX_DIGITS = len(str(MAX_OFFSET))

# Digest sizes in bytes, in the order we advertise them in Tus-Checksum-Algorithm.
CHECKSUM_DIGEST_SIZES: dict[str, int] = {"sha1": 20, "md5": 16, "sha256": 32, "crc32": 4}
SUPPORTED_CHECKSUMS: tuple[str, ...] = tuple(CHECKSUM_DIGEST_SIZES)

METHOD_OVERRIDES: tuple[str, ...] = ("PATCH", "DELETE", "HEAD")

T = TypeVar("T")


def check_tus_resumable(value: str | None) -> None:
    """Tus-Resumable must name a protocol version this server speaks (else 412)."""
    if value is None:
        raise PreconditionFailed("Tus-Resumable header is required")
    version = value.strip(OWS)
    if version not in SUPPORTED_VERSIONS:
        raise PreconditionFailed(
            f"Tus-Resumable version {quoted(version)} is not supported, "
            f"use {', '.join(SUPPORTED_VERSIONS)}"
        )


def _parse_non_negative_int(header: str, value: str | None) -> int:
    if value is None:
        raise BadRequest(f"{header} header is required")
    digits = value.strip(OWS)
    if not _DIGITS.fullmatch(digits):
        raise BadRequest(f"{header} must be a non-negative integer, got {quoted(value)}")
    # Checked on the digit count first: int() of a huge string is slow or refused.
    significant = digits.lstrip("0") or "0"
    if len(significant) > _MAX_DIGITS or int(significant) > MAX_OFFSET:
        raise BadRequest(f"{header} must be at most {MAX_OFFSET}, got {quoted(digits)}")
    return int(significant)


def parse_offset(value: str | None) -> int:
    """Upload-Offset: 1*DIGIT, at most 2**63-1."""
    return _parse_non_negative_int("Upload-Offset", value)


def parse_length(value: str | None) -> int:
    """Upload-Length: 1*DIGIT, at most 2**63-1."""
    return _parse_non_negative_int("Upload-Length", value)


def parse_creation_length(upload_length: str | None, defer_length: str | None) -> int | None:
    """The length of a new upload: an int, or None when deferred (Upload-Defer-Length: 1)."""
    if upload_length is not None and defer_length is not None:
        raise BadRequest("send either Upload-Length or Upload-Defer-Length, not both")
    if upload_length is not None:
        return parse_length(upload_length)
    if defer_length is None:
        raise BadRequest("Upload-Length or Upload-Defer-Length header is required")
    if defer_length.strip(OWS) != "1":
        raise BadRequest(f"Upload-Defer-Length must be 1, got {quoted(defer_length)}")
    return None


def check_patch_content_type(value: str | None) -> None:
    """A PATCH body must be declared application/offset+octet-stream (else 415)."""
    check_media_type(value, OFFSET_OCTET_STREAM)


def check_media_type(value: str | None, expected: str) -> None:
    """Content-Type ``value`` names the media type ``expected``, parameters aside (else 415)."""
    media_type = (value or "").split(";", 1)[0].strip(OWS).lower()
    if media_type != expected:
        got = "no Content-Type" if value is None else quoted(value)
        raise UnsupportedMediaType(f"Content-Type must be {expected}, got {got}")


def parse_checksum(value: str) -> tuple[str, bytes]:
    """Upload-Checksum: "<algorithm> <base64 digest>" -> (algorithm, digest)."""
    parts = value.strip(OWS).split(" ")
    if len(parts) != 2 or not all(parts):
        raise BadRequest(
            f"Upload-Checksum must be '<algorithm> <base64 digest>', got {quoted(value)}"
        )
    algorithm, encoded = parts[0].lower(), parts[1]
    if algorithm not in CHECKSUM_DIGEST_SIZES:
        raise BadRequest(
            f"Upload-Checksum algorithm {quoted(parts[0])} is not supported, "
            f"use one of {', '.join(SUPPORTED_CHECKSUMS)}"
        )
    try:
        digest = base64.b64decode(encoded.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        raise BadRequest(
            f"Upload-Checksum digest is not valid base64, got {quoted(encoded)}"
        ) from None
    expected = CHECKSUM_DIGEST_SIZES[algorithm]
    if len(digest) != expected:
        raise BadRequest(
            f"Upload-Checksum {algorithm} digest must be {expected} bytes, got {len(digest)}"
        )
    return algorithm, digest


@dataclass(frozen=True)
class Concat:
    """A parsed Upload-Concat: a partial upload, or a final one made of `parts`."""

    kind: Literal["partial", "final"]
    parts: tuple[str, ...] = ()


# A part's URL is printable ASCII (RFC 3986 has no raw spaces or non-ASCII).
_URL_CHARS = re.compile(r"[\x21-\x7e]+")
_ABSOLUTE_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^/?#]+.*")


def _is_concat_part(part: str) -> bool:
    if not _URL_CHARS.fullmatch(part):
        return False
    # "//host/x" is a network-path reference, neither an absolute URL nor a path.
    is_absolute_path = part.startswith("/") and not part.startswith("//")
    return is_absolute_path or bool(_ABSOLUTE_URL.fullmatch(part))


def parse_concat(value: str) -> Concat:
    """Upload-Concat: "partial" or "final;<url> <url> ..." (URLs or absolute paths)."""
    text = value.strip(OWS)
    if text == "partial":
        return Concat("partial")
    if not text.startswith("final;"):
        raise BadRequest(
            f"Upload-Concat must be 'partial' or 'final;<url> ...', got {quoted(value)}"
        )
    parts = tuple(part for part in text[len("final;") :].split(" ") if part)
    if not parts:
        raise BadRequest("Upload-Concat final must list at least one partial upload")
    for part in parts:
        if not _is_concat_part(part):
            raise BadRequest(
                f"Upload-Concat part must be an absolute URL or path, got {quoted(part)}"
            )
    return Concat("final", parts)


def parse_method_override(method: str, override: str | None) -> str:
    """The effective method: X-HTTP-Method-Override may turn a POST into PATCH/DELETE/HEAD."""
    if override is None:
        return method
    wanted = override.strip(OWS)
    if method != "POST":
        raise BadRequest(f"X-HTTP-Method-Override is only allowed on POST, not {quoted(method)}")
    # Methods are case-sensitive (RFC 9110 9.1), so "patch" is refused, not guessed.
    if wanted not in METHOD_OVERRIDES:
        raise BadRequest(
            f"X-HTTP-Method-Override must be one of {', '.join(METHOD_OVERRIDES)}, "
            f"got {quoted(override)}"
        )
    return wanted


def overridden(method: str, headers: Mapping[str, str], table: Mapping[str, T]) -> T:
    """What ``table`` holds for the method that X-HTTP-Method-Override makes of a POST to
    an upload URL; BadRequest for a POST without one."""
    handler = table.get(parse_method_override(method, headers.get("X-HTTP-Method-Override")))
    if handler is None:
        raise BadRequest("POST to an upload URL needs X-HTTP-Method-Override")
    return handler
