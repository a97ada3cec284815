"""POST /upload, the KBase staging service's multipart upload, with real multipart clients
(requests and aiohttp) against the real server."""

from __future__ import annotations

import hashlib
import io
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import pytest
import requests

from .checks import sidecar, staged
from .servers import TOKENS, ServerProcess, wait_until

pytestmark = pytest.mark.in_process

AUTH = {"Authorization": TOKENS["alice"]}
BOUNDARY = "tus-staging-test-boundary"


def post_form(server, dest_path: str | None, name: str | None, data: bytes, **extra):
    fields: dict = {}
    if dest_path is not None:
        fields["destPath"] = (None, dest_path)
    fields.update({key: (None, value) for key, value in extra.items()})
    if name is not None:
        fields["uploads"] = (name, io.BytesIO(data), "application/octet-stream")
    return requests.post(f"{server.url}/upload", headers=AUTH, files=fields, timeout=60)


def test_a_file_lands_with_its_metadata(server) -> None:
    data = b"ACGT\n" * 10_000
    answer = post_form(server, "/runs/7", "reads.txt", data, note="skipped")
    assert answer.status_code == 200, answer.text
    [listed] = answer.json()
    assert listed["name"] == "reads.txt" and listed["path"] == "alice/runs/7/reads.txt"
    assert listed["size"] == len(data) and listed["isFolder"] is False
    assert isinstance(listed["mtime"], int)
    assert staged(server, "alice", "runs/7/reads.txt").read_bytes() == data
    meta = sidecar(server, "alice", "runs/7/reads.txt")
    assert meta["source"] == "KBase upload"
    assert meta["md5"] == hashlib.md5(data).hexdigest()
    assert meta["lineCount"] == "10000" and meta["isText"] is True
    assert not list((server.data_dir / "uploads").iterdir())
    # The request log counts the file's bytes, as it does a PATCH's.
    logged = f"path=/upload status=200 user=alice bytes={len(data)} "
    assert server.logged(logged), server.log()[-600:]


async def test_aiohttps_multipart_client(server) -> None:
    form = aiohttp.FormData()
    form.add_field("destPath", "/")
    form.add_field("uploads", b"\x00\x01binary", filename="blob.bin")
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{server.url}/upload", data=form, headers=AUTH) as answer,
    ):
        assert answer.status == 200, await answer.text()
        assert (await answer.json())[0]["path"] == "alice/blob.bin"
    meta = sidecar(server, "alice", "blob.bin")
    assert meta["isText"] is False and meta["head"] == "not text file"


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        (" leading.txt", "cannot upload file with name beginning with space"),
        ("a,b.txt", "cannot upload file with ',' in name"),
        (".hidden", "cannot upload file with name beginning with '.'"),
    ],
)
def test_names_the_kbase_service_refuses(server, name: str, reason: str) -> None:
    answer = post_form(server, "/", name, b"x")
    assert (answer.status_code, answer.text.strip()) == (403, reason)


@pytest.mark.parametrize(
    ("dest_path", "name"),
    [(None, "f.txt"), ("/", None), ("../../", "f.txt"), ("a/../../b", "f.txt")],
)
def test_what_is_missing_or_unsafe_is_400(server, dest_path, name) -> None:
    answer = post_form(server, dest_path, name, b"x")
    assert answer.status_code == 400, answer.text
    assert answer.text.count("\n") == 1
    assert not list((server.data_dir / "staging" / "alice").rglob("f.txt"))
    assert not list((server.data_dir / "uploads").iterdir())


def test_a_body_that_is_not_a_form_is_400(server) -> None:
    answer = requests.post(f"{server.url}/upload", headers=AUTH, data=b"hello", timeout=10)
    assert answer.status_code == 400


def test_a_dropped_connection_leaves_nothing(server) -> None:
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="destPath"\r\n\r\n/drop\r\n'
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="uploads"; '
        'filename="cut.bin"\r\n\r\n'
    ).encode()
    parts = urlsplit(server.url)
    sock = socket.create_connection((parts.hostname, parts.port))
    sock.sendall(
        (
            f"POST /upload HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Authorization: {TOKENS['alice']}\r\n"
            f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
            f"Content-Length: {len(head) + 10_000_000}\r\n\r\n"
        ).encode()
        + head
        + b"x" * 3_000_000
    )
    sock.close()
    # The server notices, keeps nothing, and says so in its request log.
    wait_until(lambda: server.logged("path=/upload"), 30, "the cut upload's log line")
    assert not (server.data_dir / "staging" / "alice" / "drop" / "cut.bin").exists()
    assert not list((server.data_dir / "uploads").iterdir())


def multipart_stream(size: int, block: bytes) -> Iterator[bytes]:
    yield (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="destPath"\r\n\r\n/big\r\n'
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="uploads"; '
        'filename="big.bin"\r\n\r\n'
    ).encode()
    for index in range(size // len(block)):
        yield index.to_bytes(8, "big") + block[8:]
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


def peak_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


@pytest.mark.parametrize("size", [1 << 30])
def test_a_gib_goes_through_in_flat_memory(
    tmp_path: Path, redis_proc, tokens_file: Path, size: int
) -> None:
    server = ServerProcess(tmp_path / "data", redis_proc.url, tokens_file)
    server.start()
    try:
        block = bytes(range(256)) * 4096  # 1 MiB
        expected = hashlib.md5()
        for index in range(size // len(block)):
            expected.update(index.to_bytes(8, "big") + block[8:])
        before = peak_rss_kb(server.process.pid)
        answer = requests.post(
            f"{server.url}/upload",
            headers={**AUTH, "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
            data=multipart_stream(size, block),
            timeout=300,
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()[0]["size"] == size
        assert sidecar(server, "alice", "big/big.bin")["md5"] == expected.hexdigest()
        # A few blocks and buffers, whatever the size: not a copy of the file.
        grown = peak_rss_kb(server.process.pid) - before
        assert grown < 100 * 1024, f"peak RSS grew by {grown} KiB for 1 GiB"
    finally:
        server.stop()
