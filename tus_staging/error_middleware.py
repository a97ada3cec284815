"""Turn every refusal into its status with a one-line reason; never a 500 for bad input,
nor for a Redis that is away or failing over (503 with Retry-After: it comes back)."""

from __future__ import annotations

import errno
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from protocol.errors import (
    Conflict,
    InsufficientStorage,
    Locked,
    NotFound,
    ServiceUnavailable,
    TusError,
    one_line,
)
from protocol.headers import TUS_VERSION
from protocol.ietf_fields import is_ietf_request
from store.locks import LockLost
from store.paths import PathInTheWay, UnsafePath
from store.state_store import StaleOffset, UploadVanished
from store.topology import UNAVAILABLE

from .services import REASON_KEY

log = logging.getLogger("tus_staging")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
# Seconds a client is asked to wait while Redis is away: a failover takes a few.
REDIS_RETRY_AFTER = 2


def error_response(error: TusError, request: web.Request | None = None) -> web.Response:
    if request is not None:
        request[REASON_KEY] = error.reason  # the request log says why
    return web.Response(
        status=error.status,
        text=error.reason + "\n",
        headers=error.headers,
        content_type="text/plain",
    )


def refusal_of(error: Exception, request: web.Request) -> TusError | None:
    """The refusal ``error`` stands for; None for a failure of the server's own (a 500)."""
    if isinstance(error, TusError):
        return error
    if isinstance(error, PathInTheWay):  # a file where a folder is needed: a conflict
        return TusError(str(error), status=409)
    if isinstance(error, UnsafePath):
        return TusError(str(error), status=400)
    if isinstance(error, UNAVAILABLE):
        # Some of redis-py's messages list every client they tried, at length.
        cause = one_line(f"{type(error).__name__}: {error}", 200)
        log.warning("redis unavailable during %s %s: %s", request.method, request.path, cause)
        return ServiceUnavailable(
            "state store unavailable, retry shortly", retry_after=REDIS_RETRY_AFTER
        )
    # The upload changed hands, or went, under this request (a lost lock, a failover):
    # what was committed is kept; the client asks for the offset again.
    if isinstance(error, LockLost):
        return Locked(f"{error}; resume from HEAD", {"Retry-After": "1"})
    if isinstance(error, StaleOffset):
        return Conflict(f"{error}; resume from HEAD")
    if isinstance(error, UploadVanished):
        return NotFound(str(error))
    if isinstance(error, OSError) and error.errno in DISK_FULL:
        return InsufficientStorage("no space left on the upload volume")
    return None


@web.middleware
async def errors_to_responses(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except Exception as error:
        refusal = refusal_of(error, request)
        if refusal is None:
            raise
        return error_response(refusal, request)


def refusing(refusal: Callable[[web.Request], TusError | None]) -> web.Middleware:
    """A middleware that answers the requests ``refusal`` objects to and passes the rest on."""

    @web.middleware
    async def refuse(request: web.Request, handler: Handler) -> web.StreamResponse:
        error = refusal(request)
        if error is not None:
            return error_response(error, request)
        return await handler(request)

    return refuse


@web.middleware
async def tus_resumable_header(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every tus response but OPTIONS carries Tus-Resumable (errors included); the answers
    to the IETF draft's requests do not (theirs is another protocol)."""
    tagged = request.method != "OPTIONS" and not is_ietf_request(request.headers)
    try:
        response = await handler(request)
    except web.HTTPException as error:
        if tagged:
            error.headers["Tus-Resumable"] = TUS_VERSION
        raise
    if tagged:
        response.headers.setdefault("Tus-Resumable", TUS_VERSION)
    return response
