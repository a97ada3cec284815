"""Per-request body checksums (the tus checksum extension): sha1, md5, sha256, crc32."""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass
from typing import Protocol

from protocol.headers import SUPPORTED_CHECKSUMS


@dataclass(frozen=True)
class ExpectedChecksum:
    """A request's Upload-Checksum: what its body must hash to."""

    algorithm: str
    digest: bytes


class BodyChecksum(Protocol):
    def update(self, data: bytes | bytearray | memoryview) -> None: ...

    def digest(self) -> bytes: ...


class Crc32:
    """CRC-32 (zlib's, as tus clients compute it) as a 4-byte big-endian digest."""

    def __init__(self) -> None:
        self.value = 0

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self.value = zlib.crc32(data, self.value)

    def digest(self) -> bytes:
        return self.value.to_bytes(4, "big")


def new_checksum(algorithm: str) -> BodyChecksum:
    if algorithm not in SUPPORTED_CHECKSUMS:
        raise ValueError(f"unsupported checksum algorithm {algorithm!r}")
    if algorithm == "crc32":
        return Crc32()
    return hashlib.new(algorithm)
