"""Faults on the server's side: slow-loris clients, Redis going away, SIGTERM mid-body, a
full disk. Real server processes, a real redis-server, real sockets.
"""

from __future__ import annotations

import hashlib
import json
import random
import select
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from .checks import finish_and_check
from .conftest import md5_of
from .servers import TOKENS, RedisProcess, ServerProcess
from .test_network_faults import patch_head
from .tus_client import TusTestClient

MiB = 1 << 20
TOKEN = TOKENS["alice"]


def closed_by_server(sock: socket.socket, deadline: float, drip: bytes = b"") -> float | None:
    """Wait until the server closes ``sock`` (an answer before the close is allowed),
    sending ``drip`` one byte every 0.25 s meanwhile; seconds it took, None if it never did."""
    started = time.monotonic()
    pending = iter(drip)
    while time.monotonic() < deadline:
        readable, _, _ = select.select([sock], [], [], 0.25)
        if readable:
            try:
                if not sock.recv(65536):
                    return time.monotonic() - started
            except ConnectionResetError:
                return time.monotonic() - started
            continue
        byte = next(pending, None)
        if byte is not None:
            try:
                sock.send(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                return time.monotonic() - started
    return None


# --- slow loris ----------------------------------------------------------------------------


@pytest.fixture
def short_keepalive_server(make_server: Callable[..., ServerProcess]) -> ServerProcess:
    return make_server("--keepalive-timeout", "2")


def test_slow_request_head_is_cut(short_keepalive_server: ServerProcess) -> None:
    """A request head sent one byte every 0.25 s (never finished for a minute) is cut
    after about the 2 s keep-alive timeout."""
    head = (
        b"PATCH /files/0123456789abcdef0123456789abcdef HTTP/1.1\r\n"
        b"Host: 127.0.0.1\r\nTus-Resumable: 1.0.0\r\nX-Slow: " + b"z" * 200
    )
    with socket.create_connection(("127.0.0.1", short_keepalive_server.port)) as sock:
        took = closed_by_server(sock, time.monotonic() + 20, drip=head)
    assert took is not None, "a slow-loris head kept its connection for 20 s"
    assert took < 8, f"the slow head was cut after {took:.1f} s with a 2 s limit"


def test_idle_connections_are_closed(short_keepalive_server: ServerProcess) -> None:
    """A connection that never sends a byte, and one idle after a request, are closed."""
    with socket.create_connection(("127.0.0.1", short_keepalive_server.port)) as silent:
        took = closed_by_server(silent, time.monotonic() + 20)
    assert took is not None and took < 8, f"a silent connection was kept {took} s"

    with socket.create_connection(("127.0.0.1", short_keepalive_server.port)) as kept:
        kept.sendall(b"OPTIONS /files/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        kept.settimeout(10)
        assert kept.recv(65536).startswith(b"HTTP/1.1 204")
        took = closed_by_server(kept, time.monotonic() + 20)
    assert took is not None and took < 8, f"an idle keep-alive connection was kept {took} s"


# --- Redis outage --------------------------------------------------------------------------


def timed(call: Callable[[], requests.Response]) -> tuple[requests.Response, float]:
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def test_redis_outage_gives_503_then_upload_resumes(
    server: ServerProcess, redis_proc: RedisProcess, alice: TusTestClient
) -> None:
    data = random.Random(3).randbytes(6 * MiB + 5)
    name = "outage.bin"
    url = alice.create_url(len(data), name)
    assert alice.patch(url, 0, data[: 2 * MiB + 1]).status_code == 204

    redis_proc.stop()
    try:
        attempts = {
            "POST": lambda: alice.create(len(data), "during-outage.bin"),
            "HEAD": lambda: alice.head(url),
            "PATCH": lambda: alice.patch(url, 2 * MiB + 1, data[2 * MiB + 1 : 3 * MiB]),
        }
        for method, call in attempts.items():
            response, took = timed(call)
            assert response.status_code == 503, f"{method}: {response.status_code} {response.text}"
            assert response.headers.get("Retry-After", "").isdigit(), f"{method}: no Retry-After"
            assert took < 15, f"{method} answered after {took:.1f} s"
    finally:
        redis_proc.start()

    assert alice.offset(url) == 2 * MiB + 1
    finish_and_check(server, alice, url, data, name)


def test_failed_creation_leaves_no_partial_file(
    server: ServerProcess, redis_proc: RedisProcess, alice: TusTestClient
) -> None:
    uploads = server.data_dir / "uploads"
    before = set(uploads.iterdir())
    redis_proc.stop()
    try:
        assert alice.create(MiB, "never.bin").status_code == 503
    finally:
        redis_proc.start()
    assert set(uploads.iterdir()) == before, "a 503 creation left a partial file behind"


def test_redis_restart_between_patches_keeps_every_upload(
    server: ServerProcess, redis_proc: RedisProcess, alice: TusTestClient
) -> None:
    rng = random.Random(11)
    uploads = []
    for index, done in enumerate([0, MiB + 17, 3 * MiB]):
        data = rng.randbytes(4 * MiB + index)
        url = alice.create_url(len(data), f"restart-{index}.bin")
        if done:
            assert alice.patch(url, 0, data[:done]).status_code == 204
        uploads.append((url, data, done, f"restart-{index}.bin"))

    redis_proc.restart()  # append-only persistence: the state survives

    for url, _, done, _ in uploads:
        assert alice.offset(url) == done
    for url, data, _, name in uploads:
        finish_and_check(server, alice, url, data, name)


# --- graceful shutdown ---------------------------------------------------------------------


class Generated:
    """A reproducible 64 MiB body: one random MiB with the block number in its first bytes."""

    size = 64 * MiB

    def __init__(self) -> None:
        self._block = bytearray(random.Random(5).randbytes(MiB))

    def read(self, start: int, end: int) -> Iterator[bytes]:
        while start < end:
            index, skip = divmod(start, MiB)
            struct.pack_into(">Q", self._block, 0, index)
            piece = bytes(self._block[skip : min(MiB, skip + end - start)])
            yield piece
            start += len(piece)

    def md5(self) -> str:
        digest = hashlib.md5()
        for piece in self.read(0, self.size):
            digest.update(piece)
        return digest.hexdigest()


class ThrottledSender(threading.Thread):
    """Sends a PATCH body over a raw socket at about ``rate`` bytes/s until it ends or fails."""

    def __init__(self, sock: socket.socket, body: Generated, rate: float):
        super().__init__(daemon=True)
        self.sock, self.body, self.rate = sock, body, rate
        self.sent = 0  # bytes sendall() finished with
        self.attempted = 0  # bytes handed to sendall() (the last call may have failed)

    def run(self) -> None:
        started = time.monotonic()
        for piece in self.body.read(0, self.body.size):
            for offset in range(0, len(piece), 256 * 1024):
                chunk = piece[offset : offset + 256 * 1024]
                self.attempted += len(chunk)
                try:
                    self.sock.sendall(chunk)
                except OSError:
                    return
                self.sent += len(chunk)
                time.sleep(max(0.0, started + self.sent / self.rate - time.monotonic()))


def test_sigterm_mid_body_commits_and_exits(server: ServerProcess, alice: TusTestClient) -> None:
    body = Generated()
    name = "shutdown.bin"
    url = alice.create_url(body.size, name)
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    sock.sendall(patch_head(url, 0, body.size))
    sender = ThrottledSender(sock, body, rate=16 * MiB)
    sender.start()
    try:
        deadline = time.monotonic() + 20
        while sender.sent < 12 * MiB and sender.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert 0 < sender.sent < body.size, "the body is not mid-way"

        assert server.process is not None
        server.process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        status = server.process.wait(40)
        took = time.monotonic() - started
        sender.join(30)
    finally:
        sock.close()
    assert took < 30, f"the server took {took:.1f} s to stop"
    assert status == 0, f"exit status {status}\n{server.log()}"

    server.process = None
    server.start()
    offset = alice.offset(url)
    assert 0 < offset <= sender.attempted, f"offset {offset}, {sender.attempted} bytes sent"

    rest = b"".join(body.read(offset, body.size))
    response = alice.patch(url, offset, rest)
    assert response.status_code == 204, response.text
    staged = server.data_dir / "staging" / "alice" / name
    expected = body.md5()
    assert md5_of(staged) == expected
    assert json.loads((server.data_dir / "metadata" / "alice" / name).read_text())["md5"] == (
        expected
    )


# --- disk full -----------------------------------------------------------------------------


@pytest.fixture
def small_volume(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs, mounted for the test and always unmounted after it."""
    mount_point = tmp_path / "small-volume"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs (needs root): {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        if subprocess.run(["umount", str(mount_point)], capture_output=True).returncode:
            subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_disk_full_gives_507_and_resumes_once_space_is_freed(
    small_volume: Path, make_server: Callable[..., ServerProcess]
) -> None:
    server = make_server("--upload-dir", str(small_volume))
    alice = TusTestClient(server.files_url, TOKEN)
    data = random.Random(9).randbytes(12 * MiB + 3)
    name = "big-for-the-disk.bin"
    url = alice.create_url(len(data), name)

    response = alice.patch(url, 0, data)
    assert response.status_code == 507, response.text
    reason = response.text.strip()
    assert reason and "\n" not in reason, f"not a one-line reason: {response.text!r}"

    offset = alice.offset(url)
    assert offset <= 8 * MiB
    partial = small_volume / f"{url.rsplit('/', 1)[1]}.part"
    assert partial.stat().st_size >= offset, "the committed offset runs past the partial file"

    subprocess.run(["mount", "-o", "remount,size=64m", str(small_volume)], check=True)
    finish_and_check(server, alice, url, data, name)
    assert not partial.exists()
