"""Flaky links between client and server, made by a fault-injecting proxy (tests/fault_proxy.py).

PATCH bodies go through the proxy, which cuts, resets, stalls or throttles the client →
server direction; HEADs and resumes go straight to the server. Whatever the link does,
the committed offset covers exactly the bytes the server received (never more), and
resuming from HEAD gives a staged file identical to the source, with the right md5 in
its sidecar.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from tusclient import client as tus_client

from protocol.headers import OFFSET_OCTET_STREAM, TUS_VERSION
from store.keys import lock_key, upload_key

from .checks import finish_and_check
from .fault_proxy import (
    Fault,
    FaultProxy,
    ProxiedConnection,
    cut_after,
    reset_after,
    stall_after,
    throttle,
)
from .servers import TOKENS, RedisProcess, ServerProcess, wait_delivered
from .tus_client import TusTestClient, upload_id_of

MiB = 1 << 20
SIZE = 16 * MiB
TOKEN = TOKENS["alice"]


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The 16 MiB random file every test here uploads."""
    data = random.Random(20240611).randbytes(SIZE)
    (tmp_path_factory.mktemp("source") / "source.bin").write_bytes(data)
    return data


# --- helpers -------------------------------------------------------------------------------


def patch_head(upload_url: str, offset: int, length: int) -> bytes:
    """The exact request head of a PATCH declaring a ``length``-byte body at ``offset``."""
    path = urlsplit(upload_url).path
    lines = [
        f"PATCH {path} HTTP/1.1",
        "Host: tus-staging.test",
        f"Tus-Resumable: {TUS_VERSION}",
        f"Content-Type: {OFFSET_OCTET_STREAM}",
        f"Upload-Offset: {offset}",
        f"Content-Length: {length}",
        f"Authorization: Bearer {TOKEN}",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class RawPatch:
    """A PATCH sent over a raw socket to the proxy, by a background thread: the send may
    block (a stalled link) or fail (a cut link) without blocking the test."""

    def __init__(self, proxy: FaultProxy, head: bytes, body: bytes | memoryview):
        self.sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=30)
        self.send_error: OSError | None = None
        self._thread = threading.Thread(target=self._send, args=(head, body), daemon=True)
        self._thread.start()

    def _send(self, head: bytes, body: bytes | memoryview) -> None:
        try:
            self.sock.sendall(head)
            self.sock.sendall(body)
        except OSError as error:  # the link was cut under us, or the test closed the socket
            self.send_error = error

    def answer(self, timeout: float) -> bytes:
        """What the server answered (through the proxy); b'' if the connection closed."""
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(65536)
        except ConnectionResetError:
            return b""

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the sender blocked in sendall
        self.sock.close()
        self._thread.join(10)


def direct(server: ServerProcess, upload_url: str) -> str:
    """The upload's URL on the server itself (not through the proxy)."""
    return server.url + urlsplit(upload_url).path


def settle(redis_proc: RedisProcess, upload_url: str, moved_from: int, timeout: float = 15) -> None:
    """Wait, reading Redis only (no HEAD: that would ask the holder to release), until the
    interrupted PATCH has committed past ``moved_from`` and let its lock go."""
    key = upload_id_of(upload_url)
    deadline = time.monotonic() + timeout
    with redis_proc.client() as client:
        while time.monotonic() < deadline:
            offset = int(client.hget(upload_key(key), "offset") or 0)
            if offset != moved_from and not client.exists(lock_key(key)):
                return
            time.sleep(0.02)


def committed_in_redis(redis_proc: RedisProcess, upload_url: str) -> int:
    with redis_proc.client() as client:
        return int(client.hget(upload_key(upload_id_of(upload_url)), "offset") or 0)


def status_of(answer: bytes) -> int:
    assert answer.startswith(b"HTTP/1.1 "), f"not an HTTP answer: {answer[:80]!r}"
    return int(answer[9:12])


def drop_link(
    proxy: FaultProxy, url: str, offset: int, data: bytes, fault: Fault
) -> ProxiedConnection:
    """Send the rest of ``data`` from ``offset`` through the proxy under a cut or reset;
    return the proxy's view of the connection once the fault has struck."""
    head = patch_head(url, offset, len(data) - offset)
    proxy.plan(fault)
    index = len(proxy.connections)
    patch = RawPatch(proxy, head, memoryview(data)[offset:])
    try:
        connection = proxy.connection(index)
        assert connection.faulted.wait(20), "the proxy never reached the fault"
        assert connection.closed.wait(10)
    finally:
        patch.close()
    return connection


def stall(
    proxy: FaultProxy, url: str, data: bytes, body_bytes: int
) -> tuple[RawPatch, ProxiedConnection]:
    """A PATCH of all of ``data`` whose link stalls after ``body_bytes`` of body; returns once
    the server has read every forwarded byte."""
    head = patch_head(url, 0, len(data))
    proxy.plan(stall_after(len(head) + body_bytes))
    index = len(proxy.connections)
    patch = RawPatch(proxy, head, data)
    connection = proxy.connection(index)
    assert connection.faulted.wait(20), "the link never stalled"
    wait_delivered(connection.upstream)
    return patch, connection


# --- cut, reset ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["cut", "reset"])
def test_link_drop_mid_body_keeps_what_was_forwarded(
    server: ServerProcess, redis_proc: RedisProcess, source: bytes, kind: str
) -> None:
    """The link goes down (FIN, or RST) mid-body once the server has read what came
    through: HEAD reports exactly the body bytes forwarded, and the upload resumes.
    (A drop that races the server's reading is in test_link_dropping_again_and_again.)"""
    alice = TusTestClient(server.files_url, TOKEN)
    name = f"drop-{kind}.bin"
    url = alice.create_url(SIZE, name)
    with FaultProxy(server.url) as proxy:
        patch, connection = stall(proxy, url, source, 5 * MiB + 12_345)  # off block bounds
        try:
            time.sleep(0.5)  # let the server's reader take the last bytes off its buffer
            connection.close(reset=kind == "reset")
            assert connection.closed.wait(10)
        finally:
            patch.close()
    head_size = len(patch_head(url, 0, SIZE))
    assert connection.forwarded == head_size + 5 * MiB + 12_345

    settle(redis_proc, url, 0)
    offset = alice.offset(direct(server, url))
    # Never more than the server received; and, the head aside, every body byte it received.
    assert offset <= connection.forwarded
    assert offset >= connection.forwarded - head_size, (
        f"{connection.forwarded - head_size - offset} body bytes that reached the server "
        f"were not committed"
    )
    finish_and_check(server, alice, url, source, name)


def test_link_dropping_again_and_again(
    server: ServerProcess, redis_proc: RedisProcess, source: bytes
) -> None:
    """The link that drops every few minutes: five drops at random points (cut or reset),
    each resumed from HEAD; the offset never goes back nor past what was forwarded."""
    rng = random.Random(31337)
    alice = TusTestClient(server.files_url, TOKEN)
    name = "flaky-link.bin"
    url = alice.create_url(SIZE, name)
    offset = 0
    with FaultProxy(server.url) as proxy:
        for round_ in range(5):
            head_size = len(patch_head(url, offset, SIZE - offset))
            body = rng.randrange(1, (SIZE - offset) // 3)
            make = rng.choice([cut_after, reset_after])
            connection = drop_link(proxy, url, offset, source, make(head_size + body))
            settle(redis_proc, url, offset, timeout=5)
            committed = alice.offset(url)
            assert offset <= committed <= offset + connection.forwarded - head_size, (
                f"round {round_}: offset {offset} → {committed} after {body} body bytes"
            )
            offset = committed
    finish_and_check(server, alice, url, source, name)


# --- stall ---------------------------------------------------------------------------------


def test_stalled_link_committed_after_network_timeout(
    make_server: Callable[..., ServerProcess], redis_proc: RedisProcess, source: bytes
) -> None:
    server = make_server("--network-timeout", "2")
    alice = TusTestClient(server.files_url, TOKEN)
    name = "stalled-timeout.bin"
    url = alice.create_url(SIZE, name)
    received = 3 * MiB + 777
    with FaultProxy(server.url) as proxy:
        patch, _ = stall(proxy, url, source, received)
        try:
            started = time.monotonic()
            answer = patch.answer(timeout=15)  # the server gives up on the silent body
            elapsed = time.monotonic() - started
            assert answer, "the server closed the stalled PATCH without an answer"
            assert elapsed < 8, f"answered after {elapsed:.1f} s with a 2 s network timeout"
            assert status_of(answer) == 204, answer
            assert committed_in_redis(redis_proc, url) == received
        finally:
            patch.close()

    started = time.monotonic()
    assert alice.offset(url) == received
    assert time.monotonic() - started < 2, "the timed-out PATCH did not let its lock go"
    finish_and_check(server, alice, url, source, name)


def test_stalled_link_taken_over_by_head(server: ServerProcess, source: bytes) -> None:
    """No waiting for the 60 s network timeout: a HEAD on a new connection asks the
    stalled PATCH to release the upload; it commits what it has and answers 423."""
    alice = TusTestClient(server.files_url, TOKEN)
    name = "stalled-release.bin"
    url = alice.create_url(SIZE, name)
    received = 6 * MiB + 4321
    with FaultProxy(server.url) as proxy:
        patch, _ = stall(proxy, url, source, received)
        try:
            started = time.monotonic()
            head = alice.head(url)
            elapsed = time.monotonic() - started
            assert head.status_code == 200, head.text
            assert elapsed < 6, f"HEAD waited {elapsed:.1f} s behind the stalled PATCH"
            assert int(head.headers["Upload-Offset"]) == received
            assert status_of(patch.answer(timeout=10)) == 423
        finally:
            patch.close()
    finish_and_check(server, alice, url, source, name)


# --- throttle ------------------------------------------------------------------------------


def test_throttled_link_completes(server: ServerProcess, source: bytes) -> None:
    """A slow link (2 MiB/s), every connection of a real tus client (tuspy): slow but right."""
    data = source[: 4 * MiB + 99]
    name = "throttled.bin"
    with FaultProxy(server.url, default=throttle(2 * MiB)) as proxy:
        client = tus_client.TusClient(
            proxy.url + "/files/", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        path = Path(server.data_dir.parent / "throttled-source.bin")
        path.write_bytes(data)
        uploader = client.uploader(
            file_path=str(path), chunk_size=8 * MiB, metadata={"filename": name}
        )
        started = time.monotonic()
        uploader.upload()
        elapsed = time.monotonic() - started
        assert sum(c.forwarded for c in proxy.connections) >= len(data)
    assert elapsed >= 1.5, f"{len(data)} bytes in {elapsed:.1f} s: the link was not throttled"
    staged = server.data_dir / "staging" / "alice" / name
    assert staged.read_bytes() == data
    sidecar = json.loads((server.data_dir / "metadata" / "alice" / name).read_text())
    assert sidecar["md5"] == hashlib.md5(data).hexdigest()


# --- two PATCHes on one upload -------------------------------------------------------------


def test_racing_patches_never_interleave(
    server: ServerProcess, redis_proc: RedisProcess, source: bytes
) -> None:
    """PATCH A (through the proxy) holds the upload's lock on a stalled link, with garbage
    behind the stall; PATCH B (direct) takes the upload over at A's committed offset and
    completes it. A's link then comes back and delivers its garbage: none of it may reach
    the file, which must equal the source."""
    alice = TusTestClient(server.files_url, TOKEN)
    name = "raced.bin"
    url = alice.create_url(SIZE, name)
    received = 2 * MiB + 10_001
    garbage = random.Random(7).randbytes(SIZE - received)
    with FaultProxy(server.url) as proxy:
        patch, connection = stall(proxy, url, source[:received] + garbage, received)
        try:
            b_result: dict[str, requests.Response] = {}

            def patch_b() -> None:
                b_result["response"] = alice.patch(url, received, source[received:])

            b = threading.Thread(target=patch_b)
            b.start()
            # A answers 423 (it lost the upload to B), then its garbage flows on.
            assert status_of(patch.answer(timeout=10)) == 423
            connection.resume()
            b.join(60)
            assert not b.is_alive(), "PATCH B never finished"
        finally:
            patch.close()
    response = b_result["response"]
    assert response.status_code == 204, response.text
    assert response.headers["Upload-Offset"] == str(SIZE)
    assert committed_in_redis(redis_proc, url) == SIZE
    finish_check_staged = server.data_dir / "staging" / "alice" / name
    assert hashlib.md5(finish_check_staged.read_bytes()).hexdigest() == (
        hashlib.md5(source).hexdigest()
    )
    sidecar = json.loads((server.data_dir / "metadata" / "alice" / name).read_text())
    assert sidecar["md5"] == hashlib.md5(source).hexdigest()
