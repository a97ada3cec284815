"""The upload state record and its Redis hash encoding.

One Redis hash per upload holds everything another worker needs to take the next
chunk: owner, length, the committed offset, the destination, and the saved digest and
scanner states. All keys of one upload share the ``{id}`` hash tag so that scripts
touching several of them stay valid on Redis Cluster.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from enum import StrEnum

KEY_PREFIX = "tus-staging"


class UploadStatus(StrEnum):
    PARTIAL = "partial"  # accepting bytes
    FINALIZING = "finalizing"  # all bytes committed; moving into staging
    COMPLETE = "complete"  # staged; HEAD still answers offset == length


def new_upload_id() -> str:
    # 128 bits of randomness: ids are capabilities in URLs, never guessable.
    return secrets.token_hex(16)


def is_upload_id(value: str) -> bool:
    return len(value) == 32 and all(c in "0123456789abcdef" for c in value)


def upload_key(upload_id: str) -> str:
    return f"{KEY_PREFIX}:{{{upload_id}}}:upload"


def lock_key(upload_id: str) -> str:
    return f"{KEY_PREFIX}:{{{upload_id}}}:lock"


def release_key(upload_id: str) -> str:
    return f"{KEY_PREFIX}:{{{upload_id}}}:release"


def finals_key(upload_id: str) -> str:
    """The final uploads waiting for this partial upload (concatenation-unfinished)."""
    return f"{KEY_PREFIX}:{{{upload_id}}}:finals"


EXPIRY_INDEX_KEY = f"{KEY_PREFIX}:expiry"
# Uploads in the FINALIZING state, scored by when they entered it (for the janitor).
FINALIZING_INDEX_KEY = f"{KEY_PREFIX}:finalizing"


@dataclass
class UploadRecord:
    id: str
    owner: str
    length: int | None  # None while the length is deferred
    offset: int
    metadata: str  # the Upload-Metadata header as received, echoed on HEAD
    destination: str  # path relative to the owner's staging area
    status: UploadStatus = UploadStatus.PARTIAL
    created: float = 0.0
    updated: float = 0.0
    expires: float | None = None
    digest_states: dict[str, bytes] = field(default_factory=dict)
    scan_state: bytes = b""
    # (st_dev, st_ino) of the partial file, recorded before the final move so a
    # finalize resumed after a crash can tell whether the staged file is ours.
    partial_identity: str = ""
    concat: str = ""  # the Upload-Concat header value ("" when not a concat upload)
    parts: list[str] = field(default_factory=list)  # a final upload's partial upload ids
    # The staged file's metadata record (JSON), fixed when finalizing starts.
    result: bytes = b""

    @classmethod
    def new(
        cls,
        *,
        owner: str,
        length: int | None,
        metadata: str,
        destination: str,
        expire_after: float,
        concat: str = "",
        parts: list[str] | None = None,
    ) -> UploadRecord:
        """A fresh upload at offset 0 with a new id, expiring ``expire_after`` from now."""
        now = time.time()
        return cls(
            id=new_upload_id(),
            owner=owner,
            length=length,
            offset=0,
            metadata=metadata,
            destination=destination,
            created=now,
            updated=now,
            expires=now + expire_after,
            concat=concat,
            parts=list(parts or []),
        )

    @property
    def is_complete(self) -> bool:
        return self.status is UploadStatus.COMPLETE

    @property
    def is_partial_concat(self) -> bool:
        return self.concat == "partial"

    @property
    def is_final_concat(self) -> bool:
        return self.concat.startswith("final")

    @property
    def is_expired(self) -> bool:
        return (
            self.status is UploadStatus.PARTIAL
            and self.expires is not None
            and self.expires <= time.time()
        )

    @property
    def is_full(self) -> bool:
        return self.length is not None and self.offset >= self.length

    def to_redis(self) -> dict[str, bytes]:
        fields: dict[str, bytes] = {
            "id": self.id.encode(),
            "owner": self.owner.encode(),
            "length": b"" if self.length is None else str(self.length).encode(),
            "offset": str(self.offset).encode(),
            "metadata": self.metadata.encode(),
            "destination": self.destination.encode(),
            "status": self.status.value.encode(),
            "created": repr(self.created).encode(),
            "updated": repr(self.updated).encode(),
            "expires": b"" if self.expires is None else repr(self.expires).encode(),
            "scan": self.scan_state,
            "partial_identity": self.partial_identity.encode(),
            "concat": self.concat.encode(),
            "parts": " ".join(self.parts).encode(),
            "result": self.result,
        }
        for name, state in self.digest_states.items():
            fields[digest_field(name)] = state
        return fields

    @classmethod
    def from_redis(cls, raw: dict[bytes, bytes]) -> UploadRecord:
        def text(name: str) -> str:
            return raw.get(name.encode(), b"").decode()

        length = text("length")
        expires = text("expires")
        digests = {
            key.decode()[len(DIGEST_FIELD_PREFIX) :]: value
            for key, value in raw.items()
            if key.startswith(DIGEST_FIELD_PREFIX.encode())
        }
        return cls(
            id=text("id"),
            owner=text("owner"),
            length=int(length) if length else None,
            offset=int(text("offset") or 0),
            metadata=text("metadata"),
            destination=text("destination"),
            status=UploadStatus(text("status") or UploadStatus.PARTIAL.value),
            created=float(text("created") or 0),
            updated=float(text("updated") or 0),
            expires=float(expires) if expires else None,
            digest_states=digests,
            scan_state=raw.get(b"scan", b""),
            partial_identity=text("partial_identity"),
            concat=text("concat"),
            parts=text("parts").split(),
            result=raw.get(b"result", b""),
        )


DIGEST_FIELD_PREFIX = "digest:"


def digest_field(name: str) -> str:
    return f"{DIGEST_FIELD_PREFIX}{name}"
