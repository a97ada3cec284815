"""HTTP/1.1 over a plain socket, for tests that must see what no client library shows:
interim (1xx) responses, and a body sent in pieces, withheld or cut off."""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from .servers import ServerAddress


@dataclass
class RawResponse:
    status: int
    reason: str
    headers: dict[str, str]  # lower-case names; a repeated field's lines joined by ", "
    body: bytes = b""

    @property
    def interim(self) -> bool:
        return 100 <= self.status < 200

    def json(self) -> Any:
        return json.loads(self.body)


class RawConnection:
    """One connection to ``url``'s server; the caller writes requests and reads answers."""

    def __init__(self, url: str, timeout: float = 30) -> None:
        parts = urlsplit(url)
        assert parts.hostname is not None and parts.port is not None
        self.netloc = parts.netloc
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=timeout)
        self.buffer = b""

    def send_head(
        self, method: str, path: str, headers: dict[str, str] | list[tuple[str, str]]
    ) -> None:
        pairs = list(headers.items()) if isinstance(headers, dict) else list(headers)
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.netloc}"]
        lines += [f"{name}: {value}" for name, value in pairs]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape"))

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def request(
        self,
        method: str,
        path: str,
        headers: dict[str, str] | list[tuple[str, str]],
        body: bytes = b"",
    ) -> list[RawResponse]:
        """Send a whole request (Content-Length from ``body`` unless given); every response
        to it, interim ones first, the final one last."""
        pairs = list(headers.items()) if isinstance(headers, dict) else list(headers)
        if body and not any(
            name.lower() in ("content-length", "transfer-encoding") for name, _ in pairs
        ):
            pairs.append(("Content-Length", str(len(body))))
        self.send_head(method, path, pairs)
        if body:
            self.send(body)
        return self.responses(head_request=method == "HEAD")

    def responses(self, head_request: bool = False) -> list[RawResponse]:
        """Interim responses up to and with the final one."""
        answers = [self.read_response(head_request)]
        while answers[-1].interim:
            answers.append(self.read_response(head_request))
        return answers

    def read_response(self, head_request: bool = False) -> RawResponse:
        """The next response: its head, and the body a final response announces."""
        while b"\r\n\r\n" not in self.buffer:
            self._receive()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        status_line, *lines = head.decode("utf-8", "surrogateescape").split("\r\n")
        _version, status, reason = [*status_line.split(" ", 2), ""][:3]
        headers: dict[str, str] = {}
        for line in lines:
            name, _, value = line.partition(":")
            key = name.strip().lower()
            headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
        response = RawResponse(int(status), reason, headers)
        if response.interim or head_request or response.status in (204, 304):
            return response
        length = int(headers.get("content-length", "0"))
        while len(self.buffer) < length:
            self._receive()
        response.body, self.buffer = self.buffer[:length], self.buffer[length:]
        return response

    def _receive(self) -> None:
        data = self.sock.recv(1 << 20)
        if not data:
            raise ConnectionError(f"connection closed mid-response: {self.buffer[:200]!r}")
        self.buffer += data

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def raw_status(server: ServerAddress, head: bytes) -> int:
    """Send ``head`` exactly as given (no client-side checks or normalisation); the status
    of the answer."""
    with RawConnection(server.url, timeout=10) as connection:
        connection.send(head)
        return connection.read_response().status
