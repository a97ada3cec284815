"""The life of an upload as an explicit transition table, with no I/O.

An upload is created PARTIAL and takes bytes; once all of them are committed it is
FINALIZING (its metadata record fixed, the file on its way into staging) and then
COMPLETE. A concatenation's partial upload is never staged: when its last byte is in it
becomes COMPLETE directly, and a final upload takes no bytes from a client: they are
copied in from its partials. Termination ends any upload, expiry any unfinished one (GONE:
the record and the partial file are removed; a staged file stays, it is the user's).

The store checks every change of an upload against :data:`TRANSITIONS` before it makes
it (store/session.py), so a state the table does not allow is never written.

What starts FINALIZE depends on the protocol of the request: under tus 1.0.0 an upload is
complete when its offset reaches its length; under the IETF draft only a request that says
so (``Upload-Complete: ?1``) and arrives whole completes it, wherever its offset stands
(:func:`length_at_completion`).
"""

from __future__ import annotations

from enum import StrEnum

from protocol.errors import Conflict, Forbidden
from protocol.problems import InconsistentLength


class UploadState(StrEnum):
    PARTIAL = "partial"  # accepting bytes
    FINALIZING = "finalizing"  # all bytes committed; moving into staging
    COMPLETE = "complete"  # staged (or, a concatenation's partial, fully received)
    GONE = "gone"  # terminated or expired: nothing left but what was staged


class UploadKind(StrEnum):
    PLAIN = "plain"  # staged when complete
    PART = "part"  # a concatenation's partial upload (Upload-Concat: partial)
    FINAL = "final"  # a concatenation's final upload (Upload-Concat: final;…)


class UploadEvent(StrEnum):
    APPEND = "append"  # a client's bytes committed
    DECLARE_LENGTH = "declare length"  # a deferred length becomes known
    CONCATENATE = "concatenate"  # a final upload's bytes copied in from its partials
    FINALIZE = "finalize"  # all bytes in: fix the metadata record, start the move
    PLACE = "place"  # moved into staging with its sidecar
    COMPLETE_PART = "complete part"  # a partial upload has all its bytes
    TERMINATE = "terminate"  # DELETE by its owner
    EXPIRE = "expire"  # abandoned past its expiry (the janitor)


S, E = UploadState, UploadEvent
TRANSITIONS: dict[UploadState, dict[UploadEvent, UploadState]] = {
    S.PARTIAL: {
        E.APPEND: S.PARTIAL,
        E.DECLARE_LENGTH: S.PARTIAL,
        E.CONCATENATE: S.PARTIAL,
        E.FINALIZE: S.FINALIZING,
        E.COMPLETE_PART: S.COMPLETE,
        E.TERMINATE: S.GONE,
        E.EXPIRE: S.GONE,
    },
    S.FINALIZING: {
        # Repeated by whoever completes a finalize that a crash interrupted.
        E.FINALIZE: S.FINALIZING,
        E.PLACE: S.COMPLETE,
        # Always possible, even when the move is blocked: the partial file goes.
        E.TERMINATE: S.GONE,
        # A finalize blocked (by something in the way on disk) until the upload's expiry.
        E.EXPIRE: S.GONE,
    },
    S.COMPLETE: {
        E.TERMINATE: S.GONE,
        # Only a concatenation's partial upload (next_state refuses it to the others): its
        # bytes were never staged.
        E.EXPIRE: S.GONE,
    },
    S.GONE: {},
}

# Events each kind of upload may see at all; the rest are refused whatever the state.
KIND_EVENTS: dict[UploadKind, frozenset[UploadEvent]] = {
    UploadKind.PLAIN: frozenset(E) - {E.CONCATENATE, E.COMPLETE_PART},
    UploadKind.PART: frozenset(
        {E.APPEND, E.DECLARE_LENGTH, E.COMPLETE_PART, E.TERMINATE, E.EXPIRE}
    ),
    UploadKind.FINAL: frozenset(E) - {E.APPEND, E.DECLARE_LENGTH, E.COMPLETE_PART},
}


class TransitionRefused(Conflict):
    """The event is not allowed in the upload's state or for its kind (409); bytes sent to
    a final upload are refused as Forbidden (403) instead, by :func:`next_state`."""


def next_state(kind: UploadKind, state: UploadState, event: UploadEvent) -> UploadState:
    """The state after ``event``; refuses, with the reason, what the table does not allow."""
    if event not in KIND_EVENTS[kind]:
        if kind is UploadKind.FINAL and event is E.APPEND:
            raise Forbidden("a final upload (Upload-Concat: final) takes no bytes of its own")
        raise TransitionRefused(f"a {kind.value} upload cannot {event.value}")
    if kind is not UploadKind.PART and state is S.COMPLETE and event is E.EXPIRE:
        raise TransitionRefused("a staged upload does not expire")
    try:
        return TRANSITIONS[state][event]
    except KeyError:
        raise TransitionRefused(f"an upload that is {state.value} cannot {event.value}") from None


def allowed(kind: UploadKind, state: UploadState, event: UploadEvent) -> bool:
    try:
        next_state(kind, state, event)
    except (TransitionRefused, Forbidden):
        return False
    return True


def length_at_completion(length: int | None, offset: int) -> int:
    """IETF draft: the length of an upload that a request completes at ``offset``. The
    offset is the length from then on; a length indicated before must be that offset."""
    if length is not None and length != offset:
        raise InconsistentLength(
            f"the upload is completed at {offset} bytes but its length is {length}"
        )
    return offset
