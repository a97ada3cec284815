"""tus protocol extension names, and the Tus-Extension header built from them.

The server advertises only what its store can do (tusd's approach), so the caller
passes the supported subset and gets it back in one fixed, canonical order.
"""

from __future__ import annotations

from collections.abc import Iterable

CREATION = "creation"
CREATION_WITH_UPLOAD = "creation-with-upload"
CREATION_DEFER_LENGTH = "creation-defer-length"
TERMINATION = "termination"
CHECKSUM = "checksum"
EXPIRATION = "expiration"
CONCATENATION = "concatenation"
CONCATENATION_UNFINISHED = "concatenation-unfinished"

ALL_EXTENSIONS: tuple[str, ...] = (
    CREATION,
    CREATION_WITH_UPLOAD,
    CREATION_DEFER_LENGTH,
    TERMINATION,
    CHECKSUM,
    EXPIRATION,
    CONCATENATION,
    CONCATENATION_UNFINISHED,
)


def advertised(supported: Iterable[str]) -> str:
    """The Tus-Extension header value: `supported`, comma-joined in canonical order."""
    wanted = set(supported)
    unknown = wanted.difference(ALL_EXTENSIONS)
    if unknown:
        # A programming error, not a client's: fail loudly rather than advertise it.
        raise ValueError(f"unknown tus extensions: {', '.join(sorted(unknown))}")
    return ",".join(name for name in ALL_EXTENSIONS if name in wanted)
