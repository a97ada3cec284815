"""GET /files/{id}: the bytes of the file a finished upload staged, as tusd serves them.

The store opens the staged file and checks that it is still the upload's (store/
staged_file.py); the answer is aiohttp's FileResponse (Range, conditional requests,
sendfile) of that open file, reached through ``/proc/self/fd``: the bytes served are the
opened file's whatever its path names by then, and no look-alike next to it (``name.gz``,
which FileResponse would otherwise prefer for a client that accepts gzip) is served instead.
"""

from __future__ import annotations

import weakref

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter

from protocol.content_disposition import attachment
from store.staged_file import StagedFile

from .services import authenticated_user, services_of


class OpenFileResponse(web.FileResponse):
    """A FileResponse of a file already open; it owns the descriptor."""

    def __init__(self, staged: StagedFile, headers: dict[str, str]) -> None:
        super().__init__(f"/proc/self/fd/{staged.fd}", headers=headers)
        # Closed once the response has opened its own descriptor, or when it is dropped
        # unsent (a later middleware failed).
        self._close = weakref.finalize(self, staged.close)

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        try:
            return await super().prepare(request)
        finally:
            self._close()


async def get(request: web.Request) -> web.StreamResponse:
    services = services_of(request)
    user = await authenticated_user(request)
    staged = await services.uploads.open_staged(user, request.match_info["upload_id"])
    return OpenFileResponse(staged, {"Content-Disposition": attachment(staged.name)})
