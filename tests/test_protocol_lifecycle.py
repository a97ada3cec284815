"""The upload lifecycle's transition table (protocol/lifecycle.py): examples and walks."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.errors import Conflict, Forbidden, TusError
from protocol.lifecycle import (
    TRANSITIONS,
    TransitionRefused,
    UploadEvent,
    UploadKind,
    UploadState,
    allowed,
    next_state,
)

K, S, E = UploadKind, UploadState, UploadEvent


@pytest.mark.parametrize(
    ("kind", "path"),
    [
        (K.PLAIN, [E.APPEND, E.DECLARE_LENGTH, E.APPEND, E.FINALIZE, E.FINALIZE, E.PLACE]),
        (K.PART, [E.APPEND, E.COMPLETE_PART, E.EXPIRE]),
        (K.FINAL, [E.CONCATENATE, E.FINALIZE, E.PLACE, E.TERMINATE]),
        (K.PLAIN, [E.APPEND, E.FINALIZE, E.TERMINATE]),  # DELETE of a blocked finalize
        (K.PLAIN, [E.FINALIZE, E.EXPIRE]),  # blocked until its expiry
    ],
)
def test_the_lives_uploads_lead(kind: UploadKind, path: list[UploadEvent]) -> None:
    state = S.PARTIAL
    for event in path:
        state = next_state(kind, state, event)
    assert state in (S.COMPLETE, S.GONE)


@pytest.mark.parametrize(
    ("kind", "state", "event", "status"),
    [
        (K.FINAL, S.PARTIAL, E.APPEND, 403),
        (K.PLAIN, S.COMPLETE, E.APPEND, 409),
        (K.PLAIN, S.FINALIZING, E.APPEND, 409),
        (K.PLAIN, S.COMPLETE, E.EXPIRE, 409),  # staged files never expire
        (K.PART, S.PARTIAL, E.FINALIZE, 409),  # a part is never staged
        (K.PLAIN, S.PARTIAL, E.PLACE, 409),  # no move before the record is fixed
        (K.PLAIN, S.GONE, E.TERMINATE, 409),
        (K.FINAL, S.PARTIAL, E.DECLARE_LENGTH, 409),
    ],
)
def test_what_the_table_refuses(
    kind: UploadKind, state: UploadState, event: UploadEvent, status: int
) -> None:
    with pytest.raises(TusError) as refused:
        next_state(kind, state, event)
    assert refused.value.status == status
    assert isinstance(refused.value, Forbidden if status == 403 else Conflict)
    assert "\n" not in refused.value.reason


def test_every_triple_is_decided() -> None:
    for kind, state, event in itertools.product(K, S, E):
        try:
            after = next_state(kind, state, event)
        except (TransitionRefused, Forbidden):
            assert not allowed(kind, state, event)
            continue
        assert allowed(kind, state, event)
        assert after == TRANSITIONS[state][event]


def test_gone_is_the_end_and_termination_is_always_possible_before() -> None:
    for kind, event in itertools.product(K, E):
        assert not allowed(kind, S.GONE, event)
    for kind, state in itertools.product(K, (S.PARTIAL, S.FINALIZING, S.COMPLETE)):
        assert next_state(kind, state, E.TERMINATE) is S.GONE


@given(kind=st.sampled_from(K), events=st.lists(st.sampled_from(E), max_size=30))
def test_any_walk_keeps_the_order_of_a_life(kind: UploadKind, events: list[UploadEvent]) -> None:
    """Whatever is tried, in whatever order: bytes only while partial, staged only after
    finalizing, nothing after the end, and a part never staged."""
    state = S.PARTIAL
    seen: list[UploadEvent] = []
    for event in events:
        if not allowed(kind, state, event):
            continue
        before, state = state, next_state(kind, state, event)
        seen.append(event)
        if event in (E.APPEND, E.CONCATENATE, E.DECLARE_LENGTH):
            assert before is S.PARTIAL
        if event is E.PLACE:
            assert before is S.FINALIZING and E.FINALIZE in seen
        if state is S.COMPLETE and kind is not K.PART:
            assert E.PLACE in seen
    assert kind is not K.PART or E.FINALIZE not in seen
    if state is S.GONE:
        assert seen[-1] in (E.TERMINATE, E.EXPIRE)
