"""The upload record and its Redis encoding: the one place that knows the hash's fields.

One Redis hash per upload holds everything another worker needs to take the next chunk:
owner, length, the committed offset, the destination, and the saved digest and scanner
states. Code elsewhere changes the record's attributes and asks :meth:`UploadRecord.fields`
for the encoding of the ones it changed; nothing else builds a field by hand.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

from protocol.lifecycle import UploadEvent, UploadKind, UploadState, allowed

DIGEST_FIELD_PREFIX = "digest:"
TUS_SOURCE = "tus upload"  # the metadata record's source of a file that came by upload


def new_upload_id() -> str:
    # 128 bits of randomness: ids are capabilities in URLs, never guessable.
    return secrets.token_hex(16)


def is_upload_id(value: str) -> bool:
    return len(value) == 32 and all(c in "0123456789abcdef" for c in value)


def _text(value: str) -> bytes:
    return value.encode()


def _optional_number(value: float | None) -> bytes:
    return b"" if value is None else repr(value).encode()


@dataclass
class UploadRecord:
    id: str
    owner: str
    length: int | None  # None while the length is deferred
    offset: int
    metadata: str  # the Upload-Metadata header as received, echoed on HEAD
    destination: str  # path relative to the owner's staging area ("" for a concat part)
    status: UploadState = UploadState.PARTIAL
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
    # The staged file's metadata record (JSON), fixed when finalizing starts; its mtime is
    # filled in once the file is in place.
    result: bytes = b""
    source: str = TUS_SOURCE  # how the file came, as its metadata record says
    protocol: str = "tus"  # the protocol of the request that created it: "tus" or "ietf"

    # Attribute -> its hash fields. One entry per attribute: the whole encoding.
    _ENCODERS: ClassVar[dict[str, Callable[[UploadRecord], dict[str, bytes]]]] = {
        "id": lambda r: {"id": _text(r.id)},
        "owner": lambda r: {"owner": _text(r.owner)},
        "length": lambda r: {"length": b"" if r.length is None else str(r.length).encode()},
        "offset": lambda r: {"offset": str(r.offset).encode()},
        "metadata": lambda r: {"metadata": _text(r.metadata)},
        "destination": lambda r: {"destination": _text(r.destination)},
        "status": lambda r: {"status": _text(r.status.value)},
        "created": lambda r: {"created": repr(r.created).encode()},
        "updated": lambda r: {"updated": repr(r.updated).encode()},
        "expires": lambda r: {"expires": _optional_number(r.expires)},
        "digest_states": lambda r: {
            DIGEST_FIELD_PREFIX + name: state for name, state in r.digest_states.items()
        },
        "scan_state": lambda r: {"scan": r.scan_state},
        "partial_identity": lambda r: {"partial_identity": _text(r.partial_identity)},
        "concat": lambda r: {"concat": _text(r.concat)},
        "parts": lambda r: {"parts": _text(" ".join(r.parts))},
        "result": lambda r: {"result": r.result},
        "source": lambda r: {"source": _text(r.source)},
        "protocol": lambda r: {"protocol": _text(r.protocol)},
    }

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
        now: float | None = None,
        source: str = "",
        protocol: str = "tus",
    ) -> UploadRecord:
        """A fresh upload at offset 0 with a new id, expiring ``expire_after`` from now."""
        now = time.time() if now is None else now
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
            source=source or TUS_SOURCE,
            protocol=protocol,
        )

    @property
    def kind(self) -> UploadKind:
        if self.concat == "partial":
            return UploadKind.PART
        if self.concat.startswith("final"):
            return UploadKind.FINAL
        return UploadKind.PLAIN

    def is_expired(self, now: float) -> bool:
        """Past its expiry, and in a state the lifecycle lets expire: not staged (a
        finalize blocked that long expires too; a concatenation's partial upload expires
        even once complete: it is never staged)."""
        if self.expires is None or self.expires > now:
            return False
        return allowed(self.kind, self.status, UploadEvent.EXPIRE)

    @property
    def is_full(self) -> bool:
        return self.length is not None and self.offset >= self.length

    @property
    def reserved_bytes(self) -> int:
        """What the upload will take on disk once complete (0 while its length is deferred)."""
        return self.length or 0

    def fields(self, *attributes: str) -> dict[str, bytes]:
        """The hash fields of ``attributes`` (every attribute when none is named)."""
        encoded: dict[str, bytes] = {}
        for name in attributes or self._ENCODERS:
            encoded.update(self._ENCODERS[name](self))
        return encoded

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
            status=UploadState(text("status") or UploadState.PARTIAL.value),
            created=float(text("created") or 0),
            updated=float(text("updated") or 0),
            expires=float(expires) if expires else None,
            digest_states=digests,
            scan_state=raw.get(b"scan", b""),
            partial_identity=text("partial_identity"),
            concat=text("concat"),
            parts=text("parts").split(),
            result=raw.get(b"result", b""),
            source=text("source") or TUS_SOURCE,
            protocol=text("protocol") or "tus",
        )
