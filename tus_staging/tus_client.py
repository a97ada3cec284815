"""The tus 1.0.0 requests of the upload command: find the endpoint, create, ask, send.

A PATCH body is a range of the local file read one block at a time as the socket takes
it, so progress is reported while a chunk is on the wire and memory stays one block
whatever the chunk size.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import urljoin

import requests

from protocol.errors import TusError
from protocol.metadata import decode_metadata, encode_metadata

from .client_http import TIMEOUTS, ServerError, send

TUS_VERSION = "1.0.0"
BLOCK = 1024 * 1024  # bytes read and handed to the socket at a time
DEFAULT_ENDPOINT_PATH = "files/"


class Cancelled(Exception):
    """The run is being stopped (Ctrl-C): abandon the request mid-body."""


class FileChanged(Exception):
    """The local file is shorter than when the upload began (not an OSError: urllib3 would
    take that for a network failure and it would be retried)."""


@dataclass(frozen=True)
class UploadState:
    """What HEAD says of an upload."""

    offset: int
    length: int | None  # None: the length was deferred
    metadata: dict[str, bytes]


def is_tus_endpoint(session: requests.Session, url: str) -> bool:
    """Whether ``url/`` answers OPTIONS as a tus endpoint does (with ``Tus-Version``)."""
    try:
        answer = session.options(url.rstrip("/") + "/", timeout=TIMEOUTS)
    except requests.RequestException:
        return False  # the first real request will say what is wrong
    return answer.ok and "Tus-Version" in answer.headers


def find_endpoint(session: requests.Session, url: str) -> str:
    """The tus endpoint: ``url/`` itself when it answers OPTIONS as one, else
    ``url/files/`` (``url`` is then the server's base URL)."""
    candidate = url.rstrip("/") + "/"
    if is_tus_endpoint(session, candidate):
        return candidate
    return urljoin(candidate, DEFAULT_ENDPOINT_PATH)


class FileRange:
    """Bytes ``[offset, offset + length)`` of an open file as a request body.

    requests sends an iterable with a length as a Content-Length body, one item per
    ``sendall``: ``on_sent`` hears of each block once the socket has taken it."""

    def __init__(
        self,
        fd: int,
        offset: int,
        length: int,
        on_sent: Callable[[int], None],
        cancelled: Callable[[], bool],
    ):
        self.fd, self.offset, self.length = fd, offset, length
        self.on_sent, self.cancelled = on_sent, cancelled

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[bytes]:
        for block in read_range(self.fd, self.offset, self.length):
            if self.cancelled():
                raise Cancelled
            yield block
            self.on_sent(len(block))


def read_range(fd: int, offset: int, length: int) -> Iterator[bytes]:
    """Bytes ``[offset, offset + length)`` of a file, one block at a time."""
    position, end = offset, offset + length
    while position < end:
        block = os.pread(fd, min(BLOCK, end - position), position)
        if not block:
            raise FileChanged(f"the file shrank to {position} bytes while being sent")
        yield block
        position += len(block)


def sha1_of_range(fd: int, offset: int, length: int) -> str:
    """The Upload-Checksum value of a chunk (read once more before it is sent)."""
    digest = hashlib.sha1()
    for block in read_range(fd, offset, length):
        digest.update(block)
    return "sha1 " + base64.b64encode(digest.digest()).decode("ascii")


class TusClient:
    def __init__(self, endpoint: str, session: requests.Session):
        self.endpoint = endpoint
        self.session = session

    def _send(self, method: str, url: str, headers: dict[str, str], **kwargs: object):
        return send(
            self.session, method, url, headers={"Tus-Resumable": TUS_VERSION, **headers}, **kwargs
        )

    def create(self, length: int, metadata: dict[str, str]) -> str:
        """A new upload; its absolute URL."""
        encoded = encode_metadata({k: v.encode("utf-8") for k, v in metadata.items()})
        answer = self._send(
            "POST",
            self.endpoint,
            {"Upload-Length": str(length), "Upload-Metadata": encoded},
        )
        location = answer.headers.get("Location")
        if not location:
            raise ServerError(answer.status_code, "the server created an upload without a URL")
        return urljoin(self.endpoint, location)

    def state(self, upload_url: str) -> UploadState:
        headers = self._send("HEAD", upload_url, {"Cache-Control": "no-store"}).headers
        length = headers.get("Upload-Length")
        try:
            return UploadState(
                offset=int(headers["Upload-Offset"]),
                length=int(length) if length is not None else None,
                metadata=decode_metadata(headers.get("Upload-Metadata")),
            )
        except (KeyError, ValueError, TusError) as error:
            raise ServerError(None, f"unreadable HEAD answer from {upload_url}: {error}") from None

    def patch(self, upload_url: str, body: FileRange, checksum: bool) -> int:
        """Send ``body`` at its offset; the server's new offset."""
        headers = {
            "Upload-Offset": str(body.offset),
            "Content-Type": "application/offset+octet-stream",
        }
        if checksum:
            headers["Upload-Checksum"] = sha1_of_range(body.fd, body.offset, body.length)
        answer = self._send("PATCH", upload_url, headers, data=body)
        try:
            return int(answer.headers["Upload-Offset"])
        except (KeyError, ValueError):
            raise ServerError(None, "the server answered a PATCH without Upload-Offset") from None
