"""tus 1.0.0 core and the creation / creation-with-upload / defer-length / termination
extensions, against the real server over a real socket with a real Redis."""

from __future__ import annotations

import hashlib
import os
import socket

import pytest
import requests

from store.keys import upload_key

from .checks import sidecar, staged
from .servers import RedisProcess, ServerProcess
from .tus_client import TusTestClient, encode_metadata

pytestmark = pytest.mark.in_process


def test_options_advertises_version_and_extensions(server: ServerProcess) -> None:
    response = requests.options(server.files_url)
    assert response.status_code == 204
    assert response.headers["Tus-Version"] == "1.0.0"
    extensions = response.headers["Tus-Extension"].split(",")
    for name in ("creation", "creation-with-upload", "creation-defer-length", "termination"):
        assert name in extensions
    assert "Tus-Max-Size" not in response.headers


def test_options_advertises_max_size(make_server) -> None:
    server = make_server("--max-size", "1000")
    response = requests.options(server.files_url)
    assert response.headers["Tus-Max-Size"] == "1000"


def test_create_head_patch_finalize(server: ServerProcess, alice: TusTestClient) -> None:
    data = b"hello\nworld\n" * 1000 + b"no newline at the end"
    response = alice.create(len(data), "notes.txt", destPath="project/run1")
    assert response.status_code == 201
    assert response.headers["Tus-Resumable"] == "1.0.0"
    assert response.headers["Location"].startswith("/files/")  # relative: see README
    url = alice.location(response)

    head = alice.head(url)
    assert head.status_code == 200
    assert head.headers["Upload-Offset"] == "0"
    assert head.headers["Upload-Length"] == str(len(data))
    assert head.headers["Cache-Control"] == "no-store"
    assert head.headers["Tus-Resumable"] == "1.0.0"
    assert head.headers["Upload-Metadata"] == encode_metadata(
        filename="notes.txt", destPath="project/run1"
    )

    first = alice.patch(url, 0, data[:5000])
    assert first.status_code == 204
    assert first.headers["Upload-Offset"] == "5000"
    assert first.headers["Tus-Resumable"] == "1.0.0"
    assert alice.offset(url) == 5000
    last = alice.patch(url, 5000, data[5000:])
    assert last.status_code == 204
    assert last.headers["Upload-Offset"] == str(len(data))

    target = staged(server, "alice", "project/run1/notes.txt")
    assert target.read_bytes() == data
    meta = sidecar(server, "alice", "project/run1/notes.txt")
    assert meta["md5"] == hashlib.md5(data).hexdigest()
    assert meta["size"] == len(data)
    assert meta["lineCount"] == "2001"
    assert meta["isText"] is True
    assert meta["head"] == data.decode()[:1024]
    assert meta["tail"] == data.decode()[-1024:]
    assert meta["name"] == "notes.txt"
    assert meta["path"] == "alice/project/run1/notes.txt"
    assert meta["isFolder"] is False
    assert meta["mtime"] == int(os.stat(target).st_mtime * 1000)
    assert meta["uploadId"] == url.rsplit("/", 1)[1]
    assert not list((server.data_dir / "uploads").iterdir())

    # A completed upload still answers HEAD with offset == length.
    head = alice.head(url)
    assert head.status_code == 200
    assert head.headers["Upload-Offset"] == head.headers["Upload-Length"] == str(len(data))


def test_binary_file_metadata(server: ServerProcess, alice: TusTestClient) -> None:
    data = bytes(range(256)) * 100
    alice.upload(data, "blob.bin")
    meta = sidecar(server, "alice", "blob.bin")
    assert meta["isText"] is False
    assert meta["lineCount"] == str(data.count(b"\n") + 1)  # counted, as KBase does
    assert meta["head"] == meta["tail"] == "not text file"
    assert meta["md5"] == hashlib.md5(data).hexdigest()


def test_creation_with_upload(server: ServerProcess, alice: TusTestClient) -> None:
    data = os.urandom(300_000)
    response = alice.create(len(data), "whole.bin", body=data)
    assert response.status_code == 201
    assert response.headers["Upload-Offset"] == str(len(data))
    assert staged(server, "alice", "whole.bin").read_bytes() == data


def test_creation_with_partial_upload_then_patch(
    server: ServerProcess, alice: TusTestClient
) -> None:
    data = os.urandom(200_000)
    response = alice.create(len(data), "half.bin", body=data[:70_000])
    assert response.status_code == 201
    assert response.headers["Upload-Offset"] == "70000"
    url = alice.location(response)
    assert alice.patch(url, 70_000, data[70_000:]).status_code == 204
    assert staged(server, "alice", "half.bin").read_bytes() == data


def test_zero_length_upload_finalizes_at_once(server: ServerProcess, alice: TusTestClient) -> None:
    url = alice.create_url(0, "empty.txt")
    assert staged(server, "alice", "empty.txt").read_bytes() == b""
    meta = sidecar(server, "alice", "empty.txt")
    assert meta["md5"] == hashlib.md5(b"").hexdigest()
    assert meta["lineCount"] == "0"
    assert meta["isText"] is True
    assert alice.offset(url) == 0


def test_deferred_length(server: ServerProcess, alice: TusTestClient) -> None:
    data = os.urandom(100_000)
    url = alice.create_url(None, "later.bin")
    head = alice.head(url)
    assert head.headers["Upload-Defer-Length"] == "1"
    assert "Upload-Length" not in head.headers
    assert alice.patch(url, 0, data[:40_000]).status_code == 204
    response = alice.patch(url, 40_000, data[40_000:], Upload_Length=str(len(data)))
    assert response.status_code == 204
    assert response.headers["Upload-Offset"] == str(len(data))
    assert staged(server, "alice", "later.bin").read_bytes() == data
    assert alice.head(url).headers["Upload-Length"] == str(len(data))


def test_termination(server: ServerProcess, alice: TusTestClient) -> None:
    url = alice.create_url(1000, "gone.bin")
    assert alice.patch(url, 0, b"x" * 400).status_code == 204
    response = alice.delete(url)
    assert response.status_code == 204
    assert response.headers["Tus-Resumable"] == "1.0.0"
    assert alice.head(url).status_code == 404
    assert alice.patch(url, 400, b"y").status_code == 404
    assert not list((server.data_dir / "uploads").iterdir())


def test_method_override(server: ServerProcess, alice: TusTestClient) -> None:
    url = alice.create_url(10, "override.bin")
    headers = alice.headers(
        X_HTTP_Method_Override="PATCH",
        Upload_Offset="0",
        Content_Type="application/offset+octet-stream",
    )
    response = requests.post(url, headers=headers, data=b"0123456789")
    assert response.status_code == 204
    assert response.headers["Upload-Offset"] == "10"
    deleted = requests.post(url, headers=alice.headers(X_HTTP_Method_Override="DELETE"))
    assert deleted.status_code == 204
    assert alice.head(url).status_code == 404


def test_bytes_past_committed_offset_are_trimmed(
    server: ServerProcess, alice: TusTestClient
) -> None:
    data = os.urandom(50_000)
    url = alice.create_url(len(data), "trim.bin")
    assert alice.patch(url, 0, data[:20_000]).status_code == 204
    # A crashed writer left junk past the committed offset.
    partial = server.data_dir / "uploads" / (url.rsplit("/", 1)[1] + ".part")
    with open(partial, "ab") as handle:
        handle.write(b"JUNK" * 1000)
    assert alice.offset(url) == 20_000
    assert alice.patch(url, 20_000, data[20_000:]).status_code == 204
    assert staged(server, "alice", "trim.bin").read_bytes() == data
    assert sidecar(server, "alice", "trim.bin")["md5"] == hashlib.md5(data).hexdigest()


def test_relative_path_of_uppy_folder_upload(server: ServerProcess, alice: TusTestClient) -> None:
    alice.upload(b"a,b\n1,2\n", "table.csv", relativePath="/survey/2026/table.csv", name="x")
    assert staged(server, "alice", "survey/2026/table.csv").read_bytes() == b"a,b\n1,2\n"


def test_same_name_overwrites_with_latest(server: ServerProcess, alice: TusTestClient) -> None:
    alice.upload(b"first version\n", "v.txt")
    alice.upload(b"second\n", "v.txt")
    assert staged(server, "alice", "v.txt").read_bytes() == b"second\n"
    assert sidecar(server, "alice", "v.txt")["md5"] == hashlib.md5(b"second\n").hexdigest()


def test_unloadable_digest_state_is_recomputed(
    server: ServerProcess, alice: TusTestClient, redis_proc: RedisProcess
) -> None:
    data = os.urandom(3_000_000)
    url = alice.create_url(len(data), "recomputed.bin")
    assert alice.patch(url, 0, data[:1_234_567]).status_code == 204
    key = upload_key(url.rsplit("/", 1)[1])
    with redis_proc.client() as client:
        # A state from another platform (or a damaged one) must not poison the md5.
        client.hset(key, "digest:md5", b"rdigest 1 md5 92 sparc big\n" + b"\0" * 92)
        client.hset(key, "scan", b"not json")
    assert alice.patch(url, 1_234_567, data[1_234_567:]).status_code == 204
    meta = sidecar(server, "alice", "recomputed.bin")
    assert meta["md5"] == hashlib.md5(data).hexdigest()
    assert meta["isText"] is False


def test_healthz_checks_redis_and_dirs(server: ServerProcess, redis_proc: RedisProcess) -> None:
    response = requests.get(f"{server.url}/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"] == {
        "redis": True, "staging_dir": True, "metadata_dir": True, "upload_dir": True,
    }  # fmt: skip
    redis_proc.stop()
    try:
        down = requests.get(f"{server.url}/healthz", timeout=30)
        assert down.status_code == 503
        assert down.json()["checks"]["redis"] is False
    finally:
        redis_proc.start()
    assert requests.get(f"{server.url}/healthz").status_code == 200


def test_sha256_when_enabled(make_server) -> None:
    server = make_server("--sha256")
    alice = TusTestClient(server.files_url, "tok-alice")
    data = os.urandom(2_500_000)
    alice.upload(data, "hashed.bin")
    meta = sidecar(server, "alice", "hashed.bin")
    assert meta["sha256"] == hashlib.sha256(data).hexdigest()
    assert meta["md5"] == hashlib.md5(data).hexdigest()


def test_patch_without_any_body_answers(server: ServerProcess, alice: TusTestClient) -> None:
    """No Content-Length, no Transfer-Encoding: an empty body (a deferred length being
    declared, say). Found by the stateful test: the pump once spun on such a body."""
    url = alice.create_url(None, "declared.bin")
    path = url.removeprefix(server.url)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            f"PATCH {path} HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\n"
            f"Authorization: Bearer tok-alice\r\nUpload-Offset: 0\r\nUpload-Length: 5\r\n"
            "Content-Type: application/offset+octet-stream\r\nConnection: close\r\n\r\n".encode()
        )
        answer = sock.recv(4096).decode("latin-1")
    assert answer.startswith("HTTP/1.1 204"), answer
    assert alice.head(url).headers["Upload-Length"] == "5"
