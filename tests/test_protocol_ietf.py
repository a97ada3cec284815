"""The IETF draft's rules with no I/O: request fields (ignored when not the structured field
the draft defines), interop versions, lengths, problem types, the completion rule."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict

from protocol.errors import BadRequest, ChecksumMismatch, NotFound
from protocol.ietf_fields import (
    IetfRequest,
    check_content_fits,
    check_partial_upload_type,
    indicated_length,
    is_ietf_request,
    length_to_record,
)
from protocol.interop import SERVED, UNVERSIONED, select
from protocol.lifecycle import length_at_completion
from protocol.problems import (
    CompletedUpload,
    InconsistentLength,
    MismatchingOffset,
    problem_document,
)
from protocol.structured_fields import parse_dictionary
from tests.refusals import refusal


def fields(*pairs: tuple[str, str]) -> IetfRequest:
    return IetfRequest.of(CIMultiDict(pairs))


@pytest.mark.parametrize(
    ("headers", "ietf"),
    [
        ([("Upload-Complete", "?1")], True),
        ([("Upload-Draft-Interop-Version", "6")], True),
        ([("Upload-Complete", "yes")], True),  # the field is named: its value comes later
        ([("upload-complete", "?0"), ("Tus-Resumable", "1.0.0")], False),
        ([("Upload-Offset", "0")], False),
        ([], False),
    ],
)
def test_which_requests_are_the_drafts(headers: list[tuple[str, str]], ietf: bool) -> None:
    assert is_ietf_request(CIMultiDict(headers)) is ietf


def test_fields_the_draft_defines() -> None:
    request = fields(
        ("Upload-Draft-Interop-Version", "7"),
        ("Upload-Complete", "?1;note"),  # parameters are allowed and mean nothing
        ("Upload-Offset", "12"),
        ("Upload-Length", " 100 "),
    )
    assert (request.version, request.complete, request.offset, request.length) == (7, True, 12, 100)
    assert request.interop is SERVED[7]
    assert request.required_complete() is True
    assert request.required_offset() == 12


@pytest.mark.parametrize(
    ("name", "lines"),
    [
        ("Upload-Complete", ["?2"]),
        ("Upload-Complete", ["true"]),
        ("Upload-Complete", ["1"]),
        ("Upload-Complete", ["?1", "?1"]),  # two lines: a list, not a boolean
        ("Upload-Offset", ["-1"]),
        ("Upload-Offset", ["1.0"]),
        ("Upload-Offset", ["1234567890123456"]),  # past the sf-integer range
        ("Upload-Offset", ["?1"]),
        ("Upload-Length", ["ten"]),
        ("Upload-Length", ["5", "5"]),
        ("Upload-Draft-Interop-Version", ['"6"']),
    ],
)
def test_values_that_are_not_the_field_are_ignored(name: str, lines: list[str]) -> None:
    request = fields(*((name, line) for line in lines))
    attribute = {
        "Upload-Complete": "complete",
        "Upload-Offset": "offset",
        "Upload-Length": "length",
        "Upload-Draft-Interop-Version": "version",
    }[name]
    assert getattr(request, attribute) is None
    if name == "Upload-Draft-Interop-Version":
        assert request.interop is UNVERSIONED


def test_a_missing_field_is_refused_with_what_was_ignored() -> None:
    assert "Upload-Complete is required" in refusal(fields().required_complete).reason
    ignored = fields(("Upload-Complete", "yes"), ("Upload-Offset", "-5"))
    reason = refusal(ignored.required_complete).reason
    assert "'yes'" in reason and "not a structured field" in reason
    assert "'-5'" in refusal(ignored.required_offset).reason


def test_interop_versions() -> None:
    assert select(6).lifetime_key == "expires"
    assert select(7).lifetime_key == select(8).lifetime_key == "max-age"
    assert [select(v).incomplete_append_status for v in (6, 7, 8)] == [201, 204, 204]
    assert [select(v).refuses_state_fields for v in (6, 7, 8)] == [True, False, False]
    assert select(8).content_after_completion is InconsistentLength
    assert select(6).content_after_completion is CompletedUpload
    for version in (None, 5, 9, -1):
        assert select(version) is UNVERSIONED
        assert not select(version).sends_interim
    assert all(select(v).sends_interim for v in (6, 7, 8))
    assert UNVERSIONED.upload_limit(max_size=None, lifetime=None) == "min-size=0"
    assert select(6).upload_limit(max_size=10, lifetime=59.9) == "max-size=10, expires=59"
    assert select(8).upload_limit(max_size=None, lifetime=-3) == "max-age=0"


@given(
    version=st.sampled_from([None, 6, 7, 8]),
    max_size=st.none() | st.integers(0, 2**49),
    lifetime=st.none() | st.floats(-1e6, 1e9),
)
def test_upload_limit_is_a_dictionary_of_integers(
    version: int | None, max_size: int | None, lifetime: float | None
) -> None:
    interop = select(version)
    members = parse_dictionary(interop.upload_limit(max_size=max_size, lifetime=lifetime))
    values = {key: value for key, (value, _) in members.items()}
    expected: dict[str, int] = {}
    if max_size is not None:
        expected["max-size"] = max_size
    if lifetime is not None:
        expected[interop.lifetime_key] = max(0, int(lifetime))
    assert values == (expected or {"min-size": 0})


def test_lengths_a_request_indicates() -> None:
    assert indicated_length(None, False, 10, 0) is None
    assert indicated_length(None, True, 10, 5) == 15
    assert indicated_length(None, True, None, 5) == 5  # an empty ?1: the upload ends here
    assert indicated_length(None, True, -1, 5) is None  # chunked: known at the end only
    assert indicated_length(20, False, 10, 0) == 20
    assert indicated_length(15, True, 10, 5) == 15
    error = refusal(indicated_length, 16, True, 10, 5)
    assert isinstance(error, InconsistentLength)
    assert length_to_record(None, None, 3) is None
    assert length_to_record(7, 7, 3) is None
    assert length_to_record(None, 7, 3) == 7
    assert isinstance(refusal(length_to_record, 7, 8, 3), InconsistentLength)
    assert isinstance(refusal(length_to_record, None, 2, 3), InconsistentLength)
    check_content_fits(None, 5, 100)
    check_content_fits(10, 5, 5)
    check_content_fits(10, 5, -1)
    assert isinstance(refusal(check_content_fits, 10, 5, 6), InconsistentLength)
    assert length_at_completion(None, 9) == 9
    assert length_at_completion(9, 9) == 9
    assert isinstance(refusal(length_at_completion, 10, 9), InconsistentLength)


@given(
    upload_length=st.none() | st.integers(0, 1000),
    complete=st.booleans(),
    content=st.none() | st.just(-1) | st.integers(0, 1000),
    offset=st.integers(0, 1000),
)
def test_an_indicated_length_agrees_with_every_indicator(
    upload_length: int | None, complete: bool, content: int | None, offset: int
) -> None:
    try:
        length = indicated_length(upload_length, complete, content, offset)
    except InconsistentLength:
        assert upload_length is not None and complete and content != -1
        return
    if upload_length is not None:
        assert length == upload_length
    if complete and content != -1:
        assert length == offset + (content or 0)


def test_partial_upload_content_type() -> None:
    check_partial_upload_type("application/partial-upload", True)
    check_partial_upload_type("Application/Partial-Upload; x=1", True)
    check_partial_upload_type(None, False)  # an empty append need not say
    for content_type, body in (
        (None, True),
        ("application/offset+octet-stream", True),
        ("text/plain", False),
    ):
        assert refusal(check_partial_upload_type, content_type, body).status == 415


def test_problem_documents() -> None:
    assert problem_document(MismatchingOffset(100, 200)) == {
        "type": "https://iana.org/assignments/http-problem-types#mismatching-upload-offset",
        "title": "offset from request does not match offset of resource",
        "status": 409,
        "detail": "Upload-Offset 200 does not match the upload's offset 100",
        "expected-offset": 100,
        "provided-offset": 200,
    }
    completed = problem_document(CompletedUpload("done"))
    assert completed["type"].endswith("#completed-upload") and completed["status"] == 400
    length = problem_document(InconsistentLength("no"))
    assert length["type"].endswith("#inconsistent-upload-length")
    assert problem_document(NotFound("no upload 'x'")) == {
        "type": "about:blank",
        "title": "Not Found",
        "status": 404,
        "detail": "no upload 'x'",
    }
    assert problem_document(BadRequest("x\ny"))["detail"] == "x\\ny"  # one line
    assert problem_document(ChecksumMismatch("bad"))["title"] == "Error"  # 460 has no name
