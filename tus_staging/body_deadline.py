"""Every request body read has the network timeout: a client that stops sending the body
it announced is answered 408 after ``--network-timeout`` seconds, and the connection closed.

aiohttp has no read timeout of its own on the server side: a handler awaiting
``request.json()`` for a body announced and never sent waits as long as the client keeps
the connection open. A watch runs beside the handler while the body is incomplete. When
no byte of it has arrived for the timeout while the server was ready to read (the socket
not paused because the handler is slow to consume what came), the body stream is failed,
and the handler's read raises ``BodyStalled``.

Handlers that time their bodies themselves are left to do so: creation, PATCH and POST
with X-HTTP-Method-Override, of tus and of the IETF draft alike
(``upload_routes.STREAMING``), whose body pump commits what arrived when the client falls
silent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from dataclasses import dataclass

from aiohttp import web

from protocol.errors import TusError

from .error_middleware import Handler

MAX_CHECK_INTERVAL = 1.0  # seconds between looks at a body: the answer comes at most this late


class BodyStalled(TimeoutError):
    """No byte of the body for the network timeout. A TimeoutError so that aiohttp, which
    drains what is left of a body after the answer, closes the connection instead."""


class RequestTimeout(TusError):
    default_status = 408


@dataclass
class StallClock:
    """When a body counts as stalled, from what is seen of it (the clock is the caller's)."""

    timeout: float
    last_change: float  # when bytes last arrived, or the server last could not read
    received: int = 0

    def stalled(self, now: float, received: int, reading: bool) -> bool:
        if received != self.received or not reading:
            self.received, self.last_change = received, now
            return False
        return now - self.last_change >= self.timeout


class BodyWatch:
    """Looks at one request's body every few moments until it is complete or stalled."""

    def __init__(self, request: web.Request, timeout: float):
        self.content = request.content
        self.transport = request.transport
        self.loop = asyncio.get_running_loop()
        self.clock = StallClock(timeout, self.loop.time(), self.content.total_bytes)
        self.interval = min(timeout / 4, MAX_CHECK_INTERVAL)
        self._next = self.loop.call_later(self.interval, self._look)

    def _look(self) -> None:
        content, transport = self.content, self.transport
        if content.is_eof() or content.exception() is not None:
            return
        if transport is None or transport.is_closing():
            return  # the client is gone: the handler's read fails on its own
        if self.clock.stalled(self.loop.time(), content.total_bytes, transport.is_reading()):
            content.set_exception(BodyStalled())
            return
        self._next = self.loop.call_later(self.interval, self._look)

    def stop(self) -> None:
        self._next.cancel()


def body_deadline(timeout: float, self_timed: Collection[Handler] = ()) -> web.Middleware:
    @web.middleware
    async def deadline(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.content.is_eof() or request.match_info.handler in self_timed:
            return await handler(request)
        watch = BodyWatch(request, timeout)
        try:
            return await handler(request)
        except BodyStalled:
            raise RequestTimeout(
                f"no byte of the request body for {timeout:g} s (--network-timeout)"
            ) from None
        finally:
            watch.stop()

    return deadline
