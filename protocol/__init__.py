"""The protocol rules, with no I/O: what requests may say and what answers say back.

For tus 1.0.0: the request-header grammar, the Upload-Metadata codec, extension names
and the Tus-Extension header. For the IETF resumable-upload draft: its request fields,
the structured fields (RFC 8941) they are written in, its interop versions and its
problem details (RFC 9457). For both: the one path policy (which names and paths a
client may use in a user's area) and where an upload lands, the upload lifecycle as a
transition table, proxy headers (Forwarded, X-Forwarded-*), and the errors that carry
their HTTP status and a one-line reason. Besides: Content-Disposition file names, read
from IETF uploads and written for downloads.
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
