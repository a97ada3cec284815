"""A client of the IETF resumable-upload draft over raw sockets (tests/raw_http.py): every
request on a connection of its own, every answer with the interim responses before it."""

from __future__ import annotations

from dataclasses import dataclass

from protocol.ietf_fields import PARTIAL_UPLOAD

from .raw_http import RawConnection, RawResponse
from .servers import InProcessServer, ServerAddress, ServerProcess, wait_until


@dataclass
class Exchange:
    """The answers to one request: interim responses, then the final one."""

    answers: list[RawResponse]

    @property
    def final(self) -> RawResponse:
        return self.answers[-1]

    @property
    def interim(self) -> list[RawResponse]:
        return self.answers[:-1]

    @property
    def location(self) -> str:
        return self.final.headers["location"]


# A request with no interop version is the draft's by its Upload-Complete; offset
# retrieval and cancellation carry none, so without a version they name one this server
# does not speak (answered by the latest rules, never with a 104), else they are tus's.
UNSPOKEN_VERSION = 99


class IetfClient:
    def __init__(self, server: ServerAddress, token: str | None, version: int | None) -> None:
        self.server = server
        self.token = token
        self.version = version

    def headers(self, **extra: str) -> list[tuple[str, str]]:
        pairs = []
        if self.token:
            pairs.append(("Authorization", f"Bearer {self.token}"))
        version = self.version
        if version is None and "Upload_Complete" not in extra:
            version = UNSPOKEN_VERSION
        if version is not None:
            pairs.append(("Upload-Draft-Interop-Version", str(version)))
        return pairs + [(name.replace("_", "-"), value) for name, value in extra.items()]

    def connect(self) -> RawConnection:
        return RawConnection(self.server.url)

    def send(self, method: str, path: str, body: bytes = b"", **headers: str) -> Exchange:
        with self.connect() as connection:
            return Exchange(connection.request(method, path, self.headers(**headers), body))

    def create(
        self,
        body: bytes = b"",
        *,
        complete: bool,
        name: str | None = "file.bin",
        **headers: str,
    ) -> Exchange:
        if name is not None:
            headers.setdefault("Content_Disposition", f'inline; filename="{name}"')
        if not body:
            headers.setdefault("Content_Length", "0")
        return self.send("POST", "/files/", body, Upload_Complete=flag(complete), **headers)

    def append(
        self, path: str, offset: int, body: bytes = b"", *, complete: bool, **headers: str
    ) -> Exchange:
        headers.setdefault("Content_Type", PARTIAL_UPLOAD)
        if not body:
            headers.setdefault("Content_Length", "0")
        return self.send(
            "PATCH",
            path,
            body,
            Upload_Offset=str(offset),
            Upload_Complete=flag(complete),
            **headers,
        )

    def start_creation(
        self, length: int, name: str, *, complete: bool, **headers: str
    ) -> RawConnection:
        """A creation whose head is sent: the caller sends (or withholds) its content."""
        connection = self.connect()
        fields = self.headers(
            Upload_Complete=flag(complete),
            Content_Length=str(length),
            Content_Disposition=f'inline; filename="{name}"',
            **headers,
        )
        connection.send_head("POST", "/files/", fields)
        return connection

    def start_append(
        self, path: str, offset: int, length: int, *, complete: bool, **headers: str
    ) -> RawConnection:
        """An append whose head is sent: the caller sends (or withholds) its content."""
        connection = self.connect()
        fields = self.headers(
            Upload_Offset=str(offset),
            Upload_Complete=flag(complete),
            Content_Type=PARTIAL_UPLOAD,
            Content_Length=str(length),
            **headers,
        )
        connection.send_head("PATCH", path, fields)
        return connection

    def head(self, path: str, **headers: str) -> RawResponse:
        return self.send("HEAD", path, **headers).final

    def delete(self, path: str, **headers: str) -> RawResponse:
        return self.send("DELETE", path, **headers).final

    def options(self) -> RawResponse:
        return self.send("OPTIONS", "/files/").final


def flag(value: bool) -> str:
    return "?1" if value else "?0"


def path_from_log(server: InProcessServer | ServerProcess, request_id: str) -> str:
    """The upload a request created, from its line in the server's request log (once the
    request is over). A client that got no 104 cannot know it; a test can."""
    wait_until(lambda: server.logged(request_id), 30, f"the end of request {request_id}")
    if isinstance(server, ServerProcess):
        lines = server.log_path.read_text(errors="replace").splitlines()
    else:
        lines = server.logs.lines
    line = next(line for line in lines if request_id in line)
    return "/files/" + line.split("upload_id=", 1)[1].split()[0]
