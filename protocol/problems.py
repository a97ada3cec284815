"""Problem details (RFC 9457) for the IETF resumable-upload draft's refusals.

The draft registers three problem types; each is a :class:`~protocol.errors.TusError` here
that carries its members, so the protocol layer raises it like any other refusal and the
IETF endpoint answers it as ``application/problem+json``. Any other refusal becomes an
``about:blank`` problem whose ``detail`` is the one-line reason.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any, ClassVar

from protocol.errors import TusError

MEDIA_TYPE = "application/problem+json"
REGISTRY = "https://iana.org/assignments/http-problem-types#"
BLANK = "about:blank"


class Problem(TusError):
    """A refusal with a registered problem type."""

    type: ClassVar[str]
    title: ClassVar[str]

    def members(self) -> dict[str, Any]:
        """The problem type's extension members."""
        return {}


class MismatchingOffset(Problem):
    """Upload-Offset is not the upload's offset (409)."""

    default_status = 409
    type = REGISTRY + "mismatching-upload-offset"
    title = "offset from request does not match offset of resource"

    def __init__(self, expected: int, provided: int) -> None:
        super().__init__(f"Upload-Offset {provided} does not match the upload's offset {expected}")
        self.expected = expected
        self.provided = provided

    def members(self) -> dict[str, Any]:
        return {"expected-offset": self.expected, "provided-offset": self.provided}


class CompletedUpload(Problem):
    """The upload is complete: it takes nothing more (400)."""

    default_status = 400
    type = REGISTRY + "completed-upload"
    title = "upload is already completed"


class InconsistentLength(Problem):
    """The lengths a request indicates disagree with each other or with the upload's (400)."""

    default_status = 400
    type = REGISTRY + "inconsistent-upload-length"
    title = "inconsistent length values for upload"


def problem_document(error: TusError) -> dict[str, Any]:
    """The problem details of ``error``: its type and members when it has one."""
    if isinstance(error, Problem):
        return {
            "type": error.type,
            "title": error.title,
            "status": error.status,
            "detail": error.reason,
            **error.members(),
        }
    try:
        title = HTTPStatus(error.status).phrase
    except ValueError:
        title = "Error"  # a status the standard library does not name (460)
    return {"type": BLANK, "title": title, "status": error.status, "detail": error.reason}
