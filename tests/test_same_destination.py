"""Uploads that finish together at one destination never mix: one whole file wins, and its
sidecar describes that file."""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from .servers import TOKENS, ServerProcess
from .tus_client import TusTestClient


@pytest.mark.parametrize("round_", range(3))
def test_concurrent_uploads_to_one_destination(server: ServerProcess, round_: int) -> None:
    count, size = 16, 600_000
    contents = [os.urandom(size) for _ in range(count)]
    clients = [TusTestClient(server.files_url, TOKENS["alice"]) for _ in range(count)]
    urls = [c.create_url(size, "shared.bin", destPath="together") for c in clients]

    # Everyone sends the first half, then everyone the second: finalizes overlap.
    def send(index: int, start: int, end: int) -> None:
        response = clients[index].patch(urls[index], start, contents[index][start:end])
        assert response.status_code == 204, response.text

    with ThreadPoolExecutor(count) as pool:
        list(pool.map(lambda i: send(i, 0, size // 2), range(count)))
        list(pool.map(lambda i: send(i, size // 2, size), range(count)))

    staged = server.data_dir / "staging" / "alice" / "together" / "shared.bin"
    final = staged.read_bytes()
    assert final in contents
    sidecar = json.loads(
        (server.data_dir / "metadata" / "alice" / "together" / "shared.bin").read_text()
    )
    assert sidecar["md5"] == hashlib.md5(final).hexdigest()
    assert sidecar["size"] == size
    assert sidecar["uploadId"] == urls[contents.index(final)].rsplit("/", 1)[1]
    # No temp files or partials left behind, and every upload reports complete.
    assert [p.name for p in staged.parent.iterdir()] == ["shared.bin"]
    assert [p.name for p in sidecar_dir(server).iterdir()] == ["shared.bin"]
    assert not list((server.data_dir / "uploads").iterdir())
    for client, url in zip(clients, urls, strict=True):
        assert client.offset(url) == size


def sidecar_dir(server: ServerProcess) -> Path:
    return server.data_dir / "metadata" / "alice" / "together"


def test_concurrent_first_requests_of_a_new_user(server: ServerProcess) -> None:
    """The user's home is created race-free when many first requests arrive at once."""
    clients = [TusTestClient(server.files_url, TOKENS["carol"]) for _ in range(20)]
    with ThreadPoolExecutor(20) as pool:
        urls = list(
            pool.map(lambda ic: ic[1].upload(b"x%d" % ic[0], f"f{ic[0]}.txt"), enumerate(clients))
        )
    assert len(set(urls)) == 20
    home = server.data_dir / "staging" / "carol"
    assert sorted(p.name for p in home.iterdir()) == sorted(f"f{i}.txt" for i in range(20))
