"""The tus 1.0.0 protocol rules, with no I/O: header grammar, Upload-Metadata,
upload destinations, HTTP dates, extension names, and the errors that carry their
HTTP status and a one-line reason.
"""

from protocol.errors import (
    BadRequest,
    ChecksumMismatch,
    Conflict,
    Forbidden,
    Gone,
    InsufficientStorage,
    Locked,
    NotFound,
    PayloadTooLarge,
    PreconditionFailed,
    ServiceUnavailable,
    TusError,
    Unauthorized,
    UnsupportedMediaType,
)

__all__ = [
    "BadRequest",
    "ChecksumMismatch",
    "Conflict",
    "Forbidden",
    "Gone",
    "InsufficientStorage",
    "Locked",
    "NotFound",
    "PayloadTooLarge",
    "PreconditionFailed",
    "ServiceUnavailable",
    "TusError",
    "Unauthorized",
    "UnsupportedMediaType",
]
