"""One log line per request: id, method, path, status, user, upload id, bytes, duration.

Lines are written by tus_staging/log_format.py (text or JSON, never a forged line). The request
id is the client's ``X-Request-ID`` when it sends a sane one, else a new one; it is sent
back on the response so that a user's report can be found in the logs.
"""

from __future__ import annotations

import logging
import re
import secrets
import time

from aiohttp import web

from .error_middleware import Handler
from .metrics import REQUESTS
from .services import REASON_KEY, USER_KEY

access_log = logging.getLogger("tus_staging.access")

REQUEST_ID_HEADER = "X-Request-ID"
_SANE_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
# request keys that handlers fill in for the log line
UPLOAD_ID = web.RequestKey("upload_id", str)
BYTES = web.RequestKey("bytes", int)


def _route_label(request: web.Request) -> str:
    # The route pattern, not the path: upload ids and file names would explode the labels.
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def log_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.monotonic()
    offered = request.headers.get(REQUEST_ID_HEADER, "")
    request_id = offered if _SANE_ID.fullmatch(offered) else secrets.token_hex(8)
    status = 500
    try:
        response = await handler(request)
        status = response.status
        response.headers[REQUEST_ID_HEADER] = request_id
        return response
    except web.HTTPException as error:
        status = error.status
        error.headers[REQUEST_ID_HEADER] = request_id
        raise
    finally:
        duration = time.monotonic() - started
        REQUESTS.labels(request.method, _route_label(request), str(status)).inc()
        record = {
            "request_id": request_id,
            "remote": request.remote,
            "method": request.method,
            "path": request.path,
            "status": status,
            "user": request.get(USER_KEY),
            "upload_id": request.get(UPLOAD_ID) or request.match_info.get("upload_id"),
            "bytes": request.get(BYTES, 0),
            "duration_ms": round(duration * 1000, 1),
            "reason": request.get(REASON_KEY),
        }
        access_log.info("%s", record, extra={"access": record})
