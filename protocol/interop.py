"""The IETF draft's interop versions this server speaks, and what differs between them.

A client of a draft version sends ``Upload-Draft-Interop-Version`` on every request. The
server answers 6 (draft -05), 7 (-06 to -08) and 8 (-09 to -11) each by its own text where
they differ; a request that names no version, or one this server does not speak, gets the
latest rules and never a 104 interim response (the drafts forbid a 104 to a missing or
mismatching version). Everything that differs between versions is a field of
:class:`Interop`; the endpoint asks, it never compares version numbers itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.problems import CompletedUpload, InconsistentLength, Problem
from protocol.structured_fields import BareItem, serialize_dictionary


@dataclass(frozen=True)
class Interop:
    version: int | None  # None: no version this server speaks (no 104 then)
    draft: str  # the draft text whose rules these are
    lifetime_key: str  # the Upload-Limit member for an upload's remaining lifetime
    incomplete_append_status: int  # the status of an append that leaves the upload incomplete
    # -05: HEAD and DELETE carrying Upload-Offset or Upload-Complete (HEAD also
    # Upload-Length) are refused with 400.
    refuses_state_fields: bool
    # What content sent to a completed upload is (-11: an inconsistent length).
    content_after_completion: type[Problem]

    @property
    def sends_interim(self) -> bool:
        """104 (Upload Resumption Supported) only to a client of a version spoken here."""
        return self.version is not None

    def upload_limit(self, *, max_size: int | None, lifetime: float | None) -> str:
        """The Upload-Limit value: ``max-size`` and the remaining lifetime in seconds when
        they exist, else ``min-size=0`` (the drafts forbid an empty value)."""
        members: list[tuple[str, BareItem]] = []
        if max_size is not None:
            members.append(("max-size", max_size))
        if lifetime is not None:
            members.append((self.lifetime_key, max(0, int(lifetime))))
        return serialize_dictionary(members or [("min-size", 0)])


SERVED: dict[int, Interop] = {
    6: Interop(6, "draft-ietf-httpbis-resumable-upload-05", "expires", 201, True, CompletedUpload),
    7: Interop(7, "draft-ietf-httpbis-resumable-upload-08", "max-age", 204, False, CompletedUpload),
    8: Interop(
        8, "draft-ietf-httpbis-resumable-upload-11", "max-age", 204, False, InconsistentLength
    ),
}
UNVERSIONED = Interop(
    None, "draft-ietf-httpbis-resumable-upload-11", "max-age", 204, False, InconsistentLength
)


def select(version: int | None) -> Interop:
    """The rules for a request naming ``version`` (None: it names none, or an invalid one)."""
    if version is None:
        return UNVERSIONED
    return SERVED.get(version, UNVERSIONED)
