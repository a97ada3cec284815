"""The Upload-Metadata codec: "key base64,key,key base64" <-> {key: bytes}.

Values stay bytes: the tus spec lets them be any binary, and only the caller knows
which keys must be text (see `metadata_text`).
"""

from __future__ import annotations

import base64
import binascii
import re

from protocol.errors import BadRequest, quoted
from protocol.headers import OWS

HEADER = "Upload-Metadata"
# The spec forbids spaces and commas in keys and asks for ASCII; we also refuse
# control characters, so a key is always safe to echo and to store.
_KEY = re.compile(r"[\x21-\x2b\x2d-\x7e]+")


def is_valid_key(key: str) -> bool:
    return bool(_KEY.fullmatch(key))


def _decode_value(key: str, encoded: str) -> bytes:
    try:
        return base64.b64decode(encoded.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        raise BadRequest(
            f"{HEADER} value of {quoted(key)} is not valid base64, got {quoted(encoded)}"
        ) from None


def decode_metadata(header: str | None) -> dict[str, bytes]:
    """Parse Upload-Metadata; a key without a value decodes to b""."""
    if header is None or not header.strip(OWS):
        return {}
    metadata: dict[str, bytes] = {}
    for pair in header.split(","):
        fields = pair.strip(OWS).split(" ")
        key = fields[0]
        if not key:
            raise BadRequest(f"{HEADER} has an empty key in {quoted(header)}")
        if not is_valid_key(key):
            raise BadRequest(
                f"{HEADER} key must be printable ASCII without spaces or commas, got {quoted(key)}"
            )
        if len(fields) > 2 or (len(fields) == 2 and not fields[1]):
            raise BadRequest(
                f"{HEADER} pair must be 'key' or 'key base64value', got {quoted(pair)}"
            )
        if key in metadata:
            raise BadRequest(f"{HEADER} key {quoted(key)} appears more than once")
        metadata[key] = _decode_value(key, fields[1]) if len(fields) == 2 else b""
    return metadata


def encode_metadata(metadata: dict[str, bytes]) -> str:
    """The Upload-Metadata header for `metadata`; b"" values are sent as the key alone."""
    pairs = []
    for key, value in metadata.items():
        if not is_valid_key(key):
            raise ValueError(f"invalid {HEADER} key {key!r}")
        if value:
            pairs.append(f"{key} {base64.b64encode(value).decode('ascii')}")
        else:
            pairs.append(key)
    return ",".join(pairs)


def metadata_text(metadata: dict[str, bytes], key: str) -> str | None:
    """The value of `key` as text (strict UTF-8), or None when the key is absent."""
    value = metadata.get(key)
    if value is None:
        return None
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest(f"metadata {quoted(key)} in {HEADER} is not valid UTF-8") from None
