"""Downloads: exactly one file's bytes, with Range, sendfile and conditional requests.

aiohttp's FileResponse serves ``x.gz`` instead of ``x`` to a client that accepts gzip when
both exist (it is told the client's Accept-Encoding): a download must be the named file,
so the responses here never let it look for such siblings.
"""

from __future__ import annotations

import weakref
from pathlib import Path
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from protocol.content_disposition import attachment
from store.staged_file import StagedFile


def download_headers(name: str) -> dict[str, str]:
    """A download, never shown: saved as ``name``."""
    return {"Content-Type": "application/octet-stream", "Content-Disposition": attachment(name)}


class ExactFileResponse(web.FileResponse):
    """The file at ``path``, and never a compressed sibling of it."""

    async def prepare(self, request: web.BaseRequest) -> Any:
        headers = CIMultiDict(request.headers)
        headers.popall("Accept-Encoding", None)
        return await super().prepare(request.clone(headers=headers))


class OpenFileResponse(ExactFileResponse):
    """The file already opened (and checked) by the store, through its descriptor: the
    bytes served are the opened file's, whatever its path names by then. It owns the
    descriptor."""

    def __init__(self, staged: StagedFile) -> None:
        super().__init__(Path(f"/proc/self/fd/{staged.fd}"), headers=download_headers(staged.name))
        # Closed once the response has opened its own descriptor, or when it is dropped
        # unsent (a later middleware failed).
        self._close = weakref.finalize(self, staged.close)

    async def prepare(self, request: web.BaseRequest) -> Any:
        try:
            return await super().prepare(request)
        finally:
            self._close()
