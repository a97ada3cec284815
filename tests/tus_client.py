"""A thin tus client over requests for tests that need to send exact, even wrong, headers."""

from __future__ import annotations

import base64
from urllib.parse import urljoin, urlsplit

import requests

from protocol.headers import OFFSET_OCTET_STREAM, TUS_VERSION


def encode_metadata(**values: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items())


def upload_id_of(upload_url: str) -> str:
    """The upload id: the last path segment of the upload URL."""
    return urlsplit(upload_url).path.rstrip("/").rsplit("/", 1)[1]


class TusTestClient:
    def __init__(self, files_url: str, token: str | None):
        self.files_url = files_url
        self.session = requests.Session()
        self.token = token

    def headers(self, **extra: str) -> dict[str, str]:
        headers = {"Tus-Resumable": TUS_VERSION}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        headers.update({k.replace("_", "-"): v for k, v in extra.items()})
        return headers

    def create(
        self, length: int | None, filename: str = "file.bin", body: bytes | None = None, **meta: str
    ) -> requests.Response:
        headers = self.headers(Upload_Metadata=encode_metadata(filename=filename, **meta))
        if length is None:
            headers["Upload-Defer-Length"] = "1"
        else:
            headers["Upload-Length"] = str(length)
        if body is not None:
            headers["Content-Type"] = OFFSET_OCTET_STREAM
        return self.session.post(self.files_url, headers=headers, data=body, timeout=60)

    def create_url(self, length: int | None, filename: str = "file.bin", **meta: str) -> str:
        response = self.create(length, filename, **meta)
        assert response.status_code == 201, response.text
        return self.location(response)

    def location(self, response: requests.Response) -> str:
        """The upload URL from a 201, resolved like clients do (Location may be relative)."""
        return urljoin(self.files_url, response.headers["Location"])

    def head(self, url: str) -> requests.Response:
        return self.session.head(url, headers=self.headers(), timeout=60)

    def offset(self, url: str) -> int:
        response = self.head(url)
        assert response.status_code == 200, response.text
        return int(response.headers["Upload-Offset"])

    def patch(self, url: str, offset: int, body: bytes, **extra: str) -> requests.Response:
        headers = self.headers(Upload_Offset=str(offset), Content_Type=OFFSET_OCTET_STREAM, **extra)
        return self.session.patch(url, headers=headers, data=body, timeout=120)

    def create_partial(self, data: bytes, send: bool = True, **meta: str) -> str:
        """A partial upload of ``data``'s length (concatenation), sent ``data`` unless not
        ``send``; its URL."""
        headers = self.headers(Upload_Length=str(len(data)), Upload_Concat="partial")
        if meta:
            headers["Upload-Metadata"] = encode_metadata(**meta)
        response = self.session.post(self.files_url, headers=headers, timeout=60)
        assert response.status_code == 201, response.text
        url = self.location(response)
        if send:
            assert self.patch(url, 0, data).status_code == 204
        return url

    def create_final(self, parts: list[str], filename: str, **meta: str) -> requests.Response:
        """The final upload joining ``parts`` (URLs or paths), in that order."""
        headers = self.headers(
            Upload_Concat="final;" + " ".join(parts),
            Upload_Metadata=encode_metadata(filename=filename, **meta),
        )
        return self.session.post(self.files_url, headers=headers, timeout=60)

    def delete(self, url: str) -> requests.Response:
        return self.session.delete(url, headers=self.headers(), timeout=60)

    def upload(
        self, data: bytes, filename: str = "file.bin", chunk: int = 1 << 20, **meta: str
    ) -> str:
        url = self.create_url(len(data), filename, **meta)
        offset = 0
        while offset < len(data):
            response = self.patch(url, offset, data[offset : offset + chunk])
            assert response.status_code == 204, response.text
            offset = int(response.headers["Upload-Offset"])
        return url
