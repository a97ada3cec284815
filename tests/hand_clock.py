"""A clock for code that takes one as a callable (``time.time`` or ``time.monotonic``)."""

from __future__ import annotations


class Clock:
    """Time that the test moves by hand: it reads ``now`` and sets it."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
