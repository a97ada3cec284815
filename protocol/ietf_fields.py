"""The IETF resumable-upload draft's request fields, read as the draft says.

``Upload-Complete`` is an sf-boolean, ``Upload-Offset`` and ``Upload-Length`` non-negative
sf-integers, ``Upload-Draft-Interop-Version`` an sf-integer. A value that is not what the
draft defines is ignored, the whole field as if it were absent (the draft's rule); a
request that then lacks a field it needs is refused for the lack (400), with the ignored
value quoted in the reason. Several lines of one field are one value joined by commas
(RFC 9110), so two ``Upload-Complete`` lines are not a boolean and are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from protocol.errors import BadRequest, quoted
from protocol.headers import check_media_type
from protocol.interop import Interop, select
from protocol.problems import InconsistentLength
from protocol.structured_fields import BareItem, InvalidField, parse_item

UPLOAD_COMPLETE = "Upload-Complete"
UPLOAD_OFFSET = "Upload-Offset"
UPLOAD_LENGTH = "Upload-Length"
UPLOAD_LIMIT = "Upload-Limit"
INTEROP_VERSION = "Upload-Draft-Interop-Version"
TUS_RESUMABLE = "Tus-Resumable"
PARTIAL_UPLOAD = "application/partial-upload"


class FieldLines(Protocol):
    """Request headers as a multidict gives them (aiohttp's, for one)."""

    def getall(self, key: str, default: list[str]) -> list[str]: ...

    def __contains__(self, key: object) -> bool: ...


def is_ietf_request(headers: FieldLines) -> bool:
    """A request of the IETF draft: it carries Upload-Complete or
    Upload-Draft-Interop-Version (whatever their values) and no Tus-Resumable."""
    named = UPLOAD_COMPLETE in headers or INTEROP_VERSION in headers
    return named and TUS_RESUMABLE not in headers


def field_text(headers: FieldLines, name: str) -> str | None:
    """The field's value, its lines joined by commas; None when absent."""
    lines = headers.getall(name, [])
    return ", ".join(lines) if lines else None


def _bare_item(text: str | None) -> BareItem | None:
    if text is None:
        return None
    try:
        value, _parameters = parse_item(text)  # parameters are allowed and mean nothing here
    except InvalidField:
        return None
    return value


def parse_boolean(text: str | None) -> bool | None:
    """An sf-boolean item's value; None when absent or not an sf-boolean."""
    value = _bare_item(text)
    return value if isinstance(value, bool) else None


def parse_integer(text: str | None, *, minimum: int | None = None) -> int | None:
    """An sf-integer item's value (at least ``minimum``); None otherwise."""
    value = _bare_item(text)
    if type(value) is not int or (minimum is not None and value < minimum):
        return None
    return value


@dataclass(frozen=True)
class IetfRequest:
    """What a request says in the draft's fields; None for each one absent or ignored."""

    version: int | None  # the interop version the request names (any integer)
    interop: Interop  # the rules it is answered by
    complete: bool | None
    offset: int | None
    length: int | None
    raw_complete: str | None  # the text as sent, for the reason when it was ignored
    raw_offset: str | None

    @classmethod
    def of(cls, headers: FieldLines) -> IetfRequest:
        complete = field_text(headers, UPLOAD_COMPLETE)
        offset = field_text(headers, UPLOAD_OFFSET)
        version = parse_integer(field_text(headers, INTEROP_VERSION))
        return cls(
            version=version,
            interop=select(version),
            complete=parse_boolean(complete),
            offset=parse_integer(offset, minimum=0),
            length=parse_integer(field_text(headers, UPLOAD_LENGTH), minimum=0),
            raw_complete=complete,
            raw_offset=offset,
        )

    def required_complete(self) -> bool:
        """Upload-Complete, which creation and append requests must carry."""
        if self.complete is None:
            raise BadRequest(_missing(UPLOAD_COMPLETE, "?0 or ?1", self.raw_complete))
        return self.complete

    def required_offset(self) -> int:
        """Upload-Offset, which an append must carry."""
        if self.offset is None:
            raise BadRequest(_missing(UPLOAD_OFFSET, "a non-negative integer", self.raw_offset))
        return self.offset


def _missing(name: str, wanted: str, raw: str | None) -> str:
    if raw is None:
        return f"{name} is required ({wanted})"
    return f"{name} is required ({wanted}); {quoted(raw)} is not a structured field of that type"


def check_partial_upload_type(content_type: str | None, has_body: bool) -> None:
    """An append's content is application/partial-upload (an empty one may say nothing)."""
    if content_type is not None or has_body:
        check_media_type(content_type, PARTIAL_UPLOAD)


def indicated_length(
    upload_length: int | None, complete: bool, content_length: int | None, offset: int
) -> int | None:
    """The upload's length as a request starting at ``offset`` indicates it: Upload-Length,
    or with Upload-Complete: ?1 the offset plus the content's length (``content_length``:
    None without a body, -1 when unknown, chunked). Disagreeing indicators are refused."""
    by_content = None
    if complete and content_length != -1:
        by_content = offset + (content_length or 0)
    if upload_length is not None and by_content is not None and upload_length != by_content:
        raise InconsistentLength(
            f"Upload-Length {upload_length} disagrees with the content, which ends the upload "
            f"at {by_content}"
        )
    return upload_length if upload_length is not None else by_content


def length_to_record(recorded: int | None, indicated: int | None, offset: int) -> int | None:
    """The length to record for an upload at ``offset`` whose length is ``recorded``, now
    that a request indicates ``indicated``: None when there is nothing new to record. A
    length never changes once recorded, and is never below the offset."""
    if indicated is None or indicated == recorded:
        return None
    if recorded is not None:
        raise InconsistentLength(
            f"the upload's length is {recorded}, the request indicates {indicated}"
        )
    if indicated < offset:
        raise InconsistentLength(f"length {indicated} is below the upload's offset {offset}")
    return indicated


def check_content_fits(length: int | None, offset: int, content_length: int | None) -> None:
    """Content announced at ``offset`` (``content_length``: None without a body, -1 when
    unknown) must not run past the upload's length."""
    if length is None or content_length is None or content_length < 0:
        return
    if offset + content_length > length:
        raise InconsistentLength(
            f"a content of {content_length} bytes at offset {offset} runs past the upload's "
            f"length {length}"
        )
