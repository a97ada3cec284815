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


@web.middleware
async def errors_to_responses(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except TusError as error:
        return error_response(error, request)
    except PathInTheWay as error:  # a file where a folder is needed: a conflict with state
        return error_response(TusError(str(error), status=409), request)
    except UnsafePath as error:
        return error_response(TusError(str(error), status=400), request)
    except UNAVAILABLE as error:
        # Some of redis-py's messages list every client they tried, at length.
        cause = one_line(f"{type(error).__name__}: {error}", 200)
        log.warning("redis unavailable during %s %s: %s", request.method, request.path, cause)
        unavailable = ServiceUnavailable(
            "state store unavailable, retry shortly", retry_after=REDIS_RETRY_AFTER
        )
        return error_response(unavailable, request)
    # The upload changed hands, or went, under this request (a lost lock, a failover):
    # what was committed is kept; the client asks for the offset again.
    except LockLost as error:
        return error_response(Locked(f"{error}; resume from HEAD", {"Retry-After": "1"}), request)
    except StaleOffset as error:
        return error_response(Conflict(f"{error}; resume from HEAD"), request)
    except UploadVanished as error:
        return error_response(NotFound(str(error)), request)
    except OSError as error:
        if error.errno in DISK_FULL:
            return error_response(
                InsufficientStorage("no space left on the upload volume"), request
            )
        raise


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
    """Every tus response but OPTIONS carries Tus-Resumable (errors included)."""
    try:
        response = await handler(request)
    except web.HTTPException as error:
        if request.method != "OPTIONS":
            error.headers["Tus-Resumable"] = TUS_VERSION
        raise
    if request.method != "OPTIONS":
        response.headers.setdefault("Tus-Resumable", TUS_VERSION)
    return response
