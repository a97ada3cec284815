"""A fault-injecting TCP proxy between a test's client and the real server.

The proxy runs its own asyncio event loop in a background thread and listens on
127.0.0.1 (random port). Every accepted connection takes the next planned ``Fault`` (the
proxy's ``default``, passthrough unless told otherwise, once the plan is used up) and
applies it to the client → server direction; the server → client direction is always
passed through, so a client still sees whatever the server answers::

    with FaultProxy(server.url) as proxy:
        proxy.plan(cut_after(5_000_000))        # the next connection
        ...send a PATCH to proxy.url...
        connection = proxy.connection(0)
        connection.faulted.wait(10)

Faults: ``cut_after(n)`` forwards n bytes then closes both sides (FIN); ``reset_after(n)``
forwards n bytes, waits until the server's kernel has acknowledged them, then resets both
sides (SO_LINGER 0: RST); ``stall_after(n)`` forwards n bytes then stops reading from the
client, keeping both sides open until ``resume()`` or ``close(reset=False)``;
``throttle(rate)`` forwards at most ``rate`` bytes per second.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import socket
import struct
import termios
import threading
import time
from collections import deque
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal
from urllib.parse import urlsplit

FaultKind = Literal["pass", "cut", "reset", "stall", "throttle"]
READ_SIZE = 64 * 1024


@dataclass(frozen=True)
class Fault:
    kind: FaultKind
    after: int | None = None  # client → server bytes forwarded before the fault strikes
    rate: float | None = None  # bytes per second (throttle)


def passthrough() -> Fault:
    return Fault("pass")


def cut_after(nbytes: int) -> Fault:
    return Fault("cut", after=nbytes)


def reset_after(nbytes: int) -> Fault:
    return Fault("reset", after=nbytes)


def stall_after(nbytes: int) -> Fault:
    return Fault("stall", after=nbytes)


def throttle(bytes_per_sec: float) -> Fault:
    return Fault("throttle", rate=bytes_per_sec)


class ProxiedConnection:
    """One client connection through the proxy, as the test thread sees it."""

    def __init__(self, fault: Fault, loop: asyncio.AbstractEventLoop):
        self.fault = fault
        self.forwarded = 0  # client → server bytes handed to the server socket
        self.faulted = threading.Event()  # the cut / reset is done, or the stall has begun
        self.closed = threading.Event()  # both sides are closed
        self.upstream: Any = None  # the socket to the server (for delivery checks)
        self._loop = loop
        self._go_on = asyncio.Event()
        self._stop = asyncio.Event()
        self._reset_on_stop = False

    def resume(self) -> None:
        """End a stall: forward everything from here on."""
        self._loop.call_soon_threadsafe(self._go_on.set)

    def close(self, reset: bool = False) -> None:
        """Close both sides now, whatever the fault: FIN, or RST with ``reset``."""
        self._reset_on_stop = reset
        self._loop.call_soon_threadsafe(self._stop.set)


def _unacknowledged(sock: Any) -> int:
    raw = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, struct.pack("i", 0))
    return int(struct.unpack("i", raw)[0])


def _reset(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class FaultProxy:
    def __init__(self, target_url: str, default: Fault | None = None):
        parts = urlsplit(target_url)
        assert parts.hostname is not None and parts.port is not None
        self.target = (parts.hostname, parts.port)
        self.port = 0
        self.connections: list[ProxiedConnection] = []
        self.default = default or passthrough()  # the fault of connections nothing was planned for
        self._plans: deque[Fault] = deque()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def plan(self, *faults: Fault) -> None:
        """The faults of the next connections, one each, in order."""
        self._plans.extend(faults)

    def connection(self, index: int, timeout: float = 10) -> ProxiedConnection:
        """The ``index``-th connection accepted, waiting for it to arrive."""
        deadline = time.monotonic() + timeout
        while len(self.connections) <= index:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no connection #{index} through the proxy")
            time.sleep(0.01)
        return self.connections[index]

    # --- lifetime -------------------------------------------------------------------------

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        self._server = self._run(asyncio.start_server(self._accept, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._run(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def _run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(15)

    async def _shutdown(self) -> None:
        assert self._server is not None
        self._server.close()
        for connection in self.connections:
            connection._stop.set()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)

    # --- one connection -------------------------------------------------------------------

    async def _accept(
        self, client_reader: asyncio.StreamReader, client: asyncio.StreamWriter
    ) -> None:
        me = asyncio.current_task()
        assert me is not None
        self._tasks.add(me)
        connection = ProxiedConnection(
            self._plans.popleft() if self._plans else self.default, self._loop
        )
        self.connections.append(connection)
        try:
            server_reader, server = await asyncio.open_connection(*self.target)
        except OSError:
            client.transport.abort()
            connection.closed.set()
            self._tasks.discard(me)
            return
        connection.upstream = server.get_extra_info("socket")
        upstream = asyncio.ensure_future(
            self._upstream(connection, connection.fault, client_reader, client, server)
        )
        downstream = asyncio.ensure_future(self._pipe(server_reader, client))
        stop = asyncio.ensure_future(connection._stop.wait())
        try:
            done, _ = await asyncio.wait(
                {upstream, downstream, stop}, return_when=asyncio.FIRST_COMPLETED
            )
            if upstream in done and not upstream.exception() and upstream.result() == "eof":
                # The client half-closed: let the server finish its answer.
                with contextlib.suppress(OSError):
                    server.write_eof()
                await asyncio.wait({downstream, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (upstream, downstream, stop):
                task.cancel()
            if connection._reset_on_stop:
                _reset(server)
                _reset(client)
            for writer in (client, server):
                writer.transport.close()  # FIN after what is buffered; no-op after a reset
            connection.closed.set()
            self._tasks.discard(me)

    async def _upstream(
        self,
        connection: ProxiedConnection,
        fault: Fault,
        reader: asyncio.StreamReader,
        client: asyncio.StreamWriter,
        server: asyncio.StreamWriter,
    ) -> str:
        """Copy client → server under ``fault``: 'eof' when the client is done, else 'faulted'
        (the caller then closes both sides)."""
        started, start_count = time.monotonic(), connection.forwarded
        while True:
            size = READ_SIZE
            if fault.after is not None:
                size = min(size, fault.after - connection.forwarded)
                if size <= 0:
                    break
            if fault.rate is not None:
                size = max(1, min(size, int(fault.rate / 50)))
            data = await reader.read(size)
            if fault.rate is not None:
                # Time spent idle (a kept-alive connection between requests) earns no
                # credit: at most a fiftieth of a second's worth is sent ahead of the rate.
                behind = (
                    time.monotonic() - 1 / 50 - (connection.forwarded - start_count) / fault.rate
                )
                started = max(started, behind)
            if not data:
                return "eof"
            server.write(data)
            await server.drain()
            connection.forwarded += len(data)
            if fault.rate is not None:  # never ahead of the rate
                due = started + (connection.forwarded - start_count) / fault.rate
                await asyncio.sleep(max(0.0, due - time.monotonic()))

        if fault.kind == "cut":
            connection.faulted.set()
            return "faulted"
        if fault.kind == "reset":
            # An RST discards unacknowledged bytes: wait until the server's kernel has them.
            deadline = time.monotonic() + 5
            while _unacknowledged(connection.upstream) and time.monotonic() < deadline:
                await asyncio.sleep(0.005)
            _reset(server)
            _reset(client)
            connection.faulted.set()
            return "faulted"
        # stall: read nothing more from the client until resumed (or closed).
        connection.faulted.set()
        await connection._go_on.wait()
        return await self._upstream(connection, passthrough(), reader, client, server)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(READ_SIZE):
                writer.write(data)
                await writer.drain()
