"""Isolation and concurrency of the staging API against the real server.

Hypothesis throws paths at every route; nothing outside the caller's area is ever read,
listed, written or deleted. Concurrent first requests and concurrent metadata requests
are safe and computed once.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import socket
import tarfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .servers import TOKENS, ServerProcess, wait_until
from .tus_client import TusTestClient

SECRET = b"bob's secret bytes"

PATH_PIECES = st.sampled_from([
    "..", ".", "", "bob", "secret.txt", "link", "out", "%2e%2e", "%2E%2E%2F", "..%2f",
    "\\", "..\\..", "%00", "\x00", "\u2215", "\uff0f", "\u2025", "~", "/", "//", "etc",
    "passwd", "a b", " lead", "ｅｔｃ", "%252e%252e", ".%2e", "%c0%ae%c0%ae", "evil.tar",
    ".secret.txt.jgi",
])  # fmt: skip
PATHS = st.lists(st.one_of(PATH_PIECES, st.text(max_size=6)), max_size=6).map("/".join)


def send(server: ServerProcess, method: str, target: str, body: bytes = b"") -> tuple[int, bytes]:
    """A raw request line, so no client normalises the path before the server sees it."""
    request = (
        f"{method} {target} HTTP/1.1\r\nHost: x\r\nAuthorization: {TOKENS['alice']}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode("utf-8", "surrogateescape") + body
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    answer = b"".join(chunks)
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0
    return status, answer


@pytest.fixture
def planted(server: ServerProcess) -> Path:
    staging = server.data_dir / "staging"
    (staging / "bob").mkdir(parents=True)
    (staging / "bob" / "secret.txt").write_bytes(SECRET)
    alice = staging / "alice"
    alice.mkdir(parents=True)
    (alice / "mine.txt").write_bytes(b"alice's own")
    outside = server.data_dir / "out"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(SECRET)
    os.symlink(staging / "bob", alice / "link")
    os.symlink(outside, alice / "out")
    os.symlink(outside / "secret.txt", alice / "file-link")
    (staging / "bob" / ".secret.txt.jgi").write_bytes(SECRET)
    (alice / "evil.tar").write_bytes(evil_tar())
    return server.data_dir


def evil_tar() -> bytes:
    """Members that try to reach bob's home and the folder outside."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, kind, target in [
            ("../bob/planted.txt", tarfile.REGTYPE, ""),
            ("to-bob", tarfile.SYMTYPE, "../bob"),
            ("hard", tarfile.LNKTYPE, "../../out/secret.txt"),
        ]:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, target
            data = b"planted" if kind == tarfile.REGTYPE else b""
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


ROUTES = st.sampled_from([
    "list", "metadata", "download", "existence", "delete", "mv", "mkdir", "search", "similar",
    "jgi-metadata", "define-upa", "decompress",
])  # fmt: skip
METHODS = {"delete": "DELETE", "mv": "PATCH", "mkdir": "POST", "define-upa": "POST",
           "decompress": "PATCH"}  # fmt: skip


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(path=PATHS, other=PATHS, route=ROUTES)
def test_no_path_leaves_the_area(
    server: ServerProcess, planted: Path, path: str, other: str, route: str
) -> None:
    target = "/" + route + "/" + quote(path, safe="/%\\")
    method = METHODS.get(route, "GET")
    body = json.dumps({"newPath": other, "UPA": other}).encode()
    status, answer = send(server, method, target, body)
    assert status != 500 and status != 0, answer[:300]
    assert SECRET not in answer
    for secret in (planted / "staging" / "bob" / "secret.txt", planted / "out" / "secret.txt"):
        assert secret.read_bytes() == SECRET
    assert sorted(p.name for p in (planted / "staging" / "bob").iterdir()) == [
        ".secret.txt.jgi",
        "secret.txt",
    ]
    assert sorted(p.name for p in (planted / "out").iterdir()) == ["secret.txt"]
    assert not (planted / "metadata" / "bob").exists()


def test_twenty_first_requests_of_a_new_user(server: ServerProcess) -> None:
    routes = ["/list/", "/test-auth", "/existence/x", "/metadata/", "/mkdir/a/b"]
    barrier = threading.Barrier(20)

    def first_request(index: int) -> int:
        route = routes[index % len(routes)]
        barrier.wait()
        method = "POST" if route.startswith("/mkdir") else "GET"
        return requests.request(
            method, f"{server.url}{route}", headers={"Authorization": TOKENS["carol"]}
        ).status_code

    with ThreadPoolExecutor(20) as pool:
        statuses = list(pool.map(first_request, range(20)))
    assert set(statuses) <= {200, 201}, statuses
    assert (server.data_dir / "staging" / "carol" / "a" / "b").is_dir()


def test_ten_metadata_requests_on_one_big_file_compute_once(server: ServerProcess) -> None:
    home = server.data_dir / "staging" / "alice"
    home.mkdir(parents=True)
    big = home / "big.bin"
    with open(big, "wb") as handle:  # 1 GiB, sparse: instant to make, read at full speed
        handle.truncate(1 << 30)
        handle.seek((1 << 30) - 5)
        handle.write(b"tail!")
    headers = {"Authorization": TOKENS["alice"]}
    done = threading.Event()

    def ask(_: int) -> dict:
        response = requests.get(f"{server.url}/metadata/big.bin", headers=headers, timeout=300)
        assert response.status_code == 200, response.text
        return response.json()

    quick: list[float] = []

    def meanwhile() -> None:
        # Other requests keep being answered while the file is hashed (nothing blocks).
        while not done.is_set():
            started = time.monotonic()
            assert requests.get(f"{server.url}/test-service").status_code == 200
            quick.append(time.monotonic() - started)

    watcher = threading.Thread(target=meanwhile)
    with ThreadPoolExecutor(10) as pool:
        futures = [pool.submit(ask, i) for i in range(10)]
        watcher.start()
        answers = [f.result() for f in futures]
    done.set()
    watcher.join()
    assert all(answer == answers[0] for answer in answers)
    expected = hashlib.md5()
    with open(big, "rb") as handle:
        while block := handle.read(1 << 22):
            expected.update(block)
    assert answers[0]["md5"] == expected.hexdigest()
    assert answers[0]["isText"] is False
    assert server.log_path.read_text().count("computing metadata of alice/big.bin") == 1
    assert len(quick) >= 3  # other requests were answered during the computation
    print(f"\n/test-service during 10 x 1 GiB metadata: {len(quick)} answers, "
          f"max {max(quick) * 1000:.1f} ms")  # fmt: skip


def make_folder_of_files(home: Path, meta: Path, count: int) -> None:
    """``count`` files in ``home/big``, each with a sidecar as a tus upload leaves it."""
    (home / "big").mkdir(parents=True)
    (meta / "big").mkdir(parents=True)
    sidecar = {
        "source": "tus upload", "md5": "0" * 32, "lineCount": "1", "head": "x" * 200,
        "tail": "x" * 200, "isFolder": False, "isText": True, "uploadId": "0" * 32,
    }  # fmt: skip
    for i in range(count):
        name = f"file-{i:06d}.fastq"
        (home / "big" / name).write_bytes(b"x")
        (meta / "big" / name).write_text(json.dumps({**sidecar, "name": name}))


@pytest.mark.slow
def test_listing_a_big_folder_does_not_hold_up_other_requests(server: ServerProcess) -> None:
    count = 50_000
    data = server.data_dir
    make_folder_of_files(data / "staging" / "alice", data / "metadata" / "alice", count)
    headers = {"Authorization": TOKENS["alice"]}
    listing_done = threading.Event()
    latencies: list[float] = []

    def meanwhile() -> None:
        with requests.Session() as session:
            while not listing_done.is_set():
                started = time.monotonic()
                assert session.get(f"{server.url}/test-service", timeout=30).status_code == 200
                latencies.append(time.monotonic() - started)
                time.sleep(0.005)

    watcher = threading.Thread(target=meanwhile)
    watcher.start()
    try:
        wait_until(lambda: latencies, 10, "an answer to the watcher (its connection warm)")
        baseline = len(latencies)
        started = time.monotonic()
        answer = requests.get(f"{server.url}/list/big", headers=headers, timeout=120)
        took = time.monotonic() - started
    finally:
        listing_done.set()
        watcher.join()
    assert answer.status_code == 200
    listing = answer.json()
    assert len(listing) == count
    assert {entry["source"] for entry in listing} == {"tus upload"}
    during = latencies[baseline:]
    assert len(during) >= 3  # other requests were answered while the folder was listed
    worst = max(during)
    print(
        f"\n/list of {count} files: {took:.2f} s, {len(answer.content) / 1e6:.1f} MB; "
        f"/test-service meanwhile: {len(during)} answers, worst {worst * 1000:.0f} ms, "
        f"median {sorted(during)[len(during) // 2] * 1000:.1f} ms"
    )
    assert worst < 5.0  # a sanity bound only: figures come from bench/bench_list.py


def test_mv_and_delete_racing_uploads_into_their_folder(server: ServerProcess) -> None:
    """Uploads finish into a folder while it is moved and deleted: /mv and /delete answer
    200, 404 or 409, never 5xx."""
    headers = {"Authorization": TOKENS["alice"]}
    statuses: list[int] = []
    stop = threading.Event()

    def uploads() -> None:
        client = TusTestClient(server.files_url, TOKENS["alice"])
        n = 0
        while not stop.is_set():
            n += 1
            with contextlib.suppress(AssertionError, requests.RequestException):
                client.upload(b"x" * 1000, f"f{n}.txt", destPath=f"race/sub{n % 3}")

    threads = [threading.Thread(target=uploads) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        for _ in range(40):
            moved = requests.patch(
                f"{server.url}/mv/race", headers=headers, data={"newPath": "moved"}, timeout=30
            )
            statuses.append(moved.status_code)
            for folder in ("moved", "race"):
                deleted = requests.delete(
                    f"{server.url}/delete/{folder}", headers=headers, timeout=30
                )
                statuses.append(deleted.status_code)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert set(statuses) <= {200, 404, 409}, statuses
    assert 200 in statuses
