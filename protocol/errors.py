"""Errors that carry the HTTP response they should become.

A handler catches `TusError` and answers with `status`, `headers` and `reason`.
The reason is often built from client input (a header value echoed back), so it is
sanitised here to a single printable line: it can never split a response or a log line.
"""

from __future__ import annotations

from typing import ClassVar

MAX_REASON_LENGTH = 300
ELLIPSIS = "..."


def _escape_unprintable(char: str) -> str:
    # isprintable() is False for Cc, Cf, Cs, Co, Cn, Zl, Zp and every space except " ".
    if char.isprintable():
        return char
    return char.encode("unicode_escape").decode("ascii")


def one_line(text: str, limit: int = MAX_REASON_LENGTH) -> str:
    """`text` as one printable line of at most `limit` characters (repr-like escapes)."""
    escaped = "".join(_escape_unprintable(char) for char in text)
    if len(escaped) <= limit:
        return escaped
    return escaped[: limit - len(ELLIPSIS)] + ELLIPSIS


def quoted(value: str, limit: int = 60) -> str:
    """A client-supplied value, shortened and quoted, for use inside a reason."""
    if len(value) <= limit:
        return repr(value)
    return repr(value[:limit]) + ELLIPSIS


class TusError(Exception):
    """A request the server refuses, with the status and headers of the answer."""

    default_status: ClassVar[int] = 400

    def __init__(
        self,
        reason: str,
        headers: dict[str, str] | None = None,
        *,
        status: int | None = None,
    ) -> None:
        self.status: int = self.default_status if status is None else status
        self.reason: str = one_line(reason)
        self.headers: dict[str, str] = dict(headers or {})
        super().__init__(self.reason)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status}, reason={self.reason!r})"


class BadRequest(TusError):
    default_status = 400


class Unauthorized(TusError):
    default_status = 401


class Forbidden(TusError):
    default_status = 403


class NotFound(TusError):
    default_status = 404


class Conflict(TusError):
    """The client's Upload-Offset is not the committed offset."""

    default_status = 409


class Gone(TusError):
    default_status = 410


class PreconditionFailed(TusError):
    """Unsupported or missing Tus-Resumable; the answer lists the versions we speak."""

    default_status = 412
    # Kept equal to protocol.headers.TUS_VERSION (a test checks); defined here to
    # avoid an import cycle, since headers.py raises these errors.
    tus_version: ClassVar[str] = "1.0.0"

    def __init__(self, reason: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(reason, {**(headers or {}), "Tus-Version": self.tus_version})


class PayloadTooLarge(TusError):
    default_status = 413


class UnsupportedMediaType(TusError):
    default_status = 415


class Locked(TusError):
    """The upload's lock could not be had in time (another request holds it)."""

    default_status = 423


class ChecksumMismatch(TusError):
    """Upload-Checksum did not match the body (tus checksum extension, status 460)."""

    default_status = 460


class ServiceUnavailable(TusError):
    default_status = 503

    def __init__(
        self,
        reason: str,
        headers: dict[str, str] | None = None,
        retry_after: int = 5,
    ) -> None:
        super().__init__(reason, {**(headers or {}), "Retry-After": str(retry_after)})
        self.retry_after: int = retry_after


class InsufficientStorage(TusError):
    default_status = 507
