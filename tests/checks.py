"""What a finished upload must look like on disk: the staged file and its sidecar."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .servers import ServerProcess
from .tus_client import TusTestClient


def staged(server: ServerProcess, user: str, relative: str) -> Path:
    return server.data_dir / "staging" / user / relative


def sidecar(server: ServerProcess, user: str, relative: str) -> dict:
    return json.loads((server.data_dir / "metadata" / user / relative).read_text())


def finish_and_check(
    server: ServerProcess, client: TusTestClient, url: str, data: bytes, name: str
) -> None:
    """Resume from HEAD to the end; alice's staged file and its sidecar are right."""
    offset = client.offset(url)
    response = client.patch(url, offset, data[offset:])
    assert response.status_code == 204, response.text
    assert response.headers["Upload-Offset"] == str(len(data))
    md5 = hashlib.md5(data).hexdigest()
    assert hashlib.md5(staged(server, "alice", name).read_bytes()).hexdigest() == md5
    meta = sidecar(server, "alice", name)
    assert meta["md5"] == md5
    assert meta["size"] == len(data)
