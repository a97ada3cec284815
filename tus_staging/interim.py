"""Interim (1xx) responses, written on the connection ahead of the final response.

aiohttp has no API for informational responses (it writes its own ``100 Continue`` on the
transport). An interim response here is written the same way: its whole head, in one write
on the request's transport, while the handler has not returned, so the final response has
not begun and cannot interleave with it. HTTP/1.0 clients never get one (RFC 9110 15.2),
nor does a connection that is closing, nor a head that a value would split.
"""

from __future__ import annotations

from aiohttp import HttpVersion11, web

UNSAFE = frozenset("\r\n\0")


def send_interim(request: web.Request, status: int, reason: str, headers: dict[str, str]) -> bool:
    """Write a ``status`` interim response with ``headers``; False when none could be sent."""
    transport = request.transport
    if transport is None or transport.is_closing() or request.version < HttpVersion11:
        return False
    if any(UNSAFE & set(text) for text in (reason, *headers, *headers.values())):
        return False  # it would split the head; an interim response is optional
    fields = [f"{name}: {value}" for name, value in headers.items()]
    head = "\r\n".join([f"HTTP/1.1 {status} {reason}", *fields]) + "\r\n\r\n"
    transport.write(head.encode("utf-8"))  # as aiohttp writes its own heads
    return True
