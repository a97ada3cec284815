"""GET /files/{id}: the bytes of the file a finished upload staged, as tusd serves them.

The store opens the staged file and checks that it is still the upload's (store/
staged_file.py); the answer serves that open file (tus_staging/file_response.py).
"""

from __future__ import annotations

from aiohttp import web

from .file_response import OpenFileResponse
from .services import authenticated_user, services_of


async def get(request: web.Request) -> web.StreamResponse:
    services = services_of(request)
    user = await authenticated_user(request)
    staged = await services.uploads.open_staged(user, request.match_info["upload_id"])
    return OpenFileResponse(staged)
