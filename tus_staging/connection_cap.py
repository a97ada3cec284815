"""At most N open connections per client address, per server process: past it a new
connection is answered 429 and closed at once, before anything of it is read.

Counted per process (each of ``--workers`` keeps its own counts): the accept path stays free
of any shared state or round trip, and what the cap protects — a process's file
descriptors and memory — is per process too. A client can so hold at most N × workers.

A client is its IPv4 address, or the /64 of its IPv6 address (one host is usually given a
whole /64 to take addresses from). Connections over a unix socket are not counted.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from typing import Any

from aiohttp import web

log = logging.getLogger("tus_staging")

DEFAULT_PER_CLIENT = 64
IPV6_CLIENT_PREFIX = 64


def client_key(peername: object) -> str | None:
    """Who a connection counts against, from its peer address (None: not counted)."""
    if not isinstance(peername, tuple) or not peername or not isinstance(peername[0], str):
        return None
    try:
        address = ipaddress.ip_address(peername[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, IPV6_CLIENT_PREFIX), strict=False))
    return str(address)


class ConnectionCounts:
    """Open connections per client of one process."""

    def __init__(self, limit: int):
        self.limit = limit
        self.open: dict[str, int] = {}
        self._refusing: set[str] = set()  # clients at the cap, already logged

    def admit(self, key: str) -> bool:
        count = self.open.get(key, 0)
        if count >= self.limit:
            if key not in self._refusing:
                self._refusing.add(key)
                log.warning(
                    "refusing new connections from %s: %d open (--max-client-connections)",
                    key, count,
                )  # fmt: skip
            return False
        self.open[key] = count + 1
        return True

    def release(self, key: str) -> None:
        count = self.open.pop(key) - 1
        if count:
            self.open[key] = count
        self._refusing.discard(key)


def refusal_response(limit: int) -> bytes:
    reason = f"too many open connections from this address (at most {limit} per process)\n"
    return (
        "HTTP/1.1 429 Too Many Requests\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(reason)}\r\n"
        "Connection: close\r\n\r\n"
        f"{reason}"
    ).encode()


class CountedConnection(asyncio.Protocol):
    """A connection's HTTP protocol, made only once the connection is admitted, and
    counted against its client for as long as it is open."""

    def __init__(self, counts: ConnectionCounts, make_protocol: Any):
        self.counts = counts
        self.make_protocol = make_protocol
        self.key: str | None = None
        self.inner: asyncio.Protocol | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        key = client_key(transport.get_extra_info("peername"))
        if key is not None and not self.counts.admit(key):
            assert isinstance(transport, asyncio.WriteTransport)
            transport.write(refusal_response(self.counts.limit))
            transport.close()
            return
        self.key = key
        self.inner = self.make_protocol()
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.inner is not None:
            self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.inner is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.inner is None:
            return
        if self.key is not None:
            self.counts.release(self.key)
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()


class CountingServer:
    """aiohttp's server as the sites' protocol factory, counting; the rest is the server's."""

    def __init__(self, server: web.Server, counts: ConnectionCounts):
        self._server = server
        self._counts = counts

    def __call__(self) -> CountedConnection:
        return CountedConnection(self._counts, self._server)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._server, name)


class CappedRunner(web.AppRunner):
    """An AppRunner whose sites (which take ``runner.server`` as their protocol factory,
    gunicorn's worker's included) count each client's connections."""

    def __init__(self, app: web.Application, limit: int, **kwargs: Any):
        super().__init__(app, **kwargs)
        self._counts = ConnectionCounts(limit)

    @property
    def server(self) -> Any:
        server = super().server
        return None if server is None else CountingServer(server, self._counts)
