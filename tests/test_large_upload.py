"""Large uploads against the real server: right md5, right size, constant server memory.

The bodies are *generated* (one random MiB, a block counter in its first 8 bytes), never
files on disk, and hashed as they are sent. The server's peak resident set (VmHWM) must
stay small whatever the upload's size: it streams blocks, it never holds a body.

The multi-GiB cases are ``slow`` (``pytest -m slow tests/test_large_upload.py``); the
256 MiB case runs in every CI run. The helpers here are reused by bench/bench_upload.py.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import select
import shutil
import struct
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from protocol.headers import OFFSET_OCTET_STREAM, TUS_VERSION

from .servers import TOKENS, ServerProcess
from .tus_client import TusTestClient

MiB = 1 << 20
GiB = 1 << 30
PEAK_RSS_LIMIT = 200 * 1000 * 1000  # bytes: the server's VmHWM must stay below 200 MB


class GeneratedStream:
    """A reproducible pseudo-random byte stream, hashed (md5) as it is read.

    Block ``i`` is one random MiB with ``i`` (8 bytes, big-endian) over its first bytes:
    every block differs, nothing is stored. ``read(n)`` yields the next ``n`` bytes as
    views of one reused buffer: each view is valid only until the next one is produced,
    so consume (send) it at once.
    """

    def __init__(self, block_size: int = MiB):
        self.block_size = block_size
        self._buffer = bytearray(os.urandom(block_size))
        self._view = memoryview(self._buffer)
        self.position = 0
        self.md5 = hashlib.md5()

    def read(self, nbytes: int) -> Iterator[memoryview]:
        end = self.position + nbytes
        while self.position < end:
            index, skip = divmod(self.position, self.block_size)
            struct.pack_into(">Q", self._buffer, 0, index)
            piece = self._view[skip : min(self.block_size, skip + end - self.position)]
            self.md5.update(piece)
            yield piece
            self.position += len(piece)

    def hexdigest(self) -> str:
        return self.md5.hexdigest()


@dataclass
class PatchTiming:
    """One PATCH sent over http.client: its answer and when things happened (perf_counter)."""

    status: int
    headers: dict[str, str]
    started: float
    last_byte_sent: float  # sendall() of the body's last byte returned
    answered: float  # the status line and headers were read
    server_rx_queue: int | None  # bytes still unread in the server's socket at last_byte_sent
    drained: float | None  # the server's socket was first seen empty after last_byte_sent

    @property
    def seconds(self) -> float:
        return self.answered - self.started

    @property
    def after_last_byte(self) -> float:
        return self.answered - self.last_byte_sent

    @property
    def after_drained(self) -> float | None:
        """From the server having read the whole body off its socket to the answer."""
        return None if self.drained is None else self.answered - self.drained


def tcp_rx_queue(local_port: int, remote_port: int) -> int | None:
    """Bytes waiting in the receive queue of the IPv4 socket local_port ↔ remote_port."""
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        local, remote, queues = fields[1], fields[2], fields[4]
        if int(local.split(":")[1], 16) == local_port and int(remote.split(":")[1], 16) == (
            remote_port
        ):
            return int(queues.split(":")[1], 16)
    return None


def patch_stream(
    url: str,
    token: str,
    offset: int,
    length: int,
    body: Iterable[bytes | memoryview],
    time_drain: bool = True,
) -> PatchTiming:
    """PATCH ``length`` bytes from ``body`` (any block sizes) on a connection of its own.

    ``time_drain`` polls /proc/net/tcp after the last byte to time when the server had
    read everything (``drained``); that costs CPU, so concurrent senders leave it off."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=600)
    try:
        started = time.perf_counter()
        connection.putrequest("PATCH", parts.path, skip_accept_encoding=True)
        for name, value in (
            ("Tus-Resumable", TUS_VERSION),
            ("Authorization", f"Bearer {token}"),
            ("Upload-Offset", str(offset)),
            ("Content-Type", OFFSET_OCTET_STREAM),
            ("Content-Length", str(length)),
        ):
            connection.putheader(name, value)
        connection.endheaders()
        sock = connection.sock
        assert sock is not None
        sent = 0
        try:
            for piece in body:
                sock.sendall(piece)
                sent += len(piece)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered early (an error): read that answer below
        last_byte_sent = time.perf_counter()
        ports = (parts.port or 80, sock.getsockname()[1])
        rx_queue = tcp_rx_queue(*ports) if time_drain else None
        drained = None
        queued = rx_queue
        # Poll until the server has read everything, or its answer is already here.
        while queued is not None and not select.select([sock], [], [], 0.0005)[0]:
            if queued == 0:
                drained = time.perf_counter()
                break
            queued = tcp_rx_queue(*ports)
        response = connection.getresponse()
        answered = time.perf_counter()
        response.read()
        if sent != length and response.status < 300:
            raise AssertionError(f"sent {sent} of {length} bytes, yet got {response.status}")
        return PatchTiming(
            response.status,
            dict(response.getheaders()),
            started,
            last_byte_sent,
            answered,
            rx_queue,
            drained,
        )
    finally:
        connection.close()


def peak_rss(pid: int) -> int:
    """VmHWM of a live process, in bytes: the most resident memory it has ever had."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmHWM in /proc/{pid}/status")


def server_pid(server: ServerProcess) -> int:
    assert server.process is not None and server.process.poll() is None, server.log()
    return server.process.pid


def sidecar_of(data_dir: Path, user: str, relative: str) -> dict:
    return json.loads((data_dir / "metadata" / user / relative).read_text())


def upload_generated(
    server: ServerProcess, user: str, filename: str, total: int, patches: int = 1
) -> tuple[str, GeneratedStream, list[PatchTiming]]:
    """Create an upload of ``total`` generated bytes and send it in ``patches`` PATCHes."""
    token = TOKENS[user]
    url = TusTestClient(server.files_url, token).create_url(total, filename)
    stream = GeneratedStream()
    timings = []
    step = -(-total // patches)
    offset = 0
    while offset < total:
        size = min(step, total - offset)
        timing = patch_stream(url, token, offset, size, stream.read(size))
        assert timing.status == 204, (timing.status, server.log())
        offset += size
        assert int(timing.headers["Upload-Offset"]) == offset
        timings.append(timing)
    return url, stream, timings


def check_finished(server: ServerProcess, user: str, filename: str, total: int, md5: str) -> None:
    staged = server.data_dir / "staging" / user / filename
    assert staged.stat().st_size == total
    record = sidecar_of(server.data_dir, user, filename)
    assert record["md5"] == md5
    assert record["size"] == total
    assert record["isText"] is False
    assert list((server.data_dir / "uploads").glob("*.part")) == []


@pytest.fixture
def big_server(server: ServerProcess) -> Iterator[ServerProcess]:
    """The test's server; its staged files are deleted afterwards (tmp_path is kept)."""
    yield server
    for name in ("staging", "uploads"):
        shutil.rmtree(server.data_dir / name, ignore_errors=True)


def test_256_mib_in_one_patch_keeps_server_memory_flat(big_server: ServerProcess) -> None:
    total = 256 * MiB
    _, stream, _ = upload_generated(big_server, "alice", "gen-256m.bin", total)
    check_finished(big_server, "alice", "gen-256m.bin", total, stream.hexdigest())
    assert peak_rss(server_pid(big_server)) < PEAK_RSS_LIMIT


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("patches", [1, 4], ids=["one-patch", "four-patches"])
def test_6_gib_generated_upload(big_server: ServerProcess, patches: int) -> None:
    total = 6 * GiB
    filename = f"gen-6g-{patches}.bin"
    started = time.perf_counter()
    _, stream, timings = upload_generated(big_server, "alice", filename, total, patches)
    seconds = time.perf_counter() - started
    check_finished(big_server, "alice", filename, total, stream.hexdigest())
    hwm = peak_rss(server_pid(big_server))
    finalize = timings[-1].after_last_byte
    print(
        f"\n6 GiB in {patches} PATCH(es): {seconds:.1f} s, {total / seconds / 1e6:.0f} MB/s, "
        f"last byte → 204 {finalize * 1e3:.0f} ms, server VmHWM {hwm / 1e6:.1f} MB"
    )
    assert hwm < PEAK_RSS_LIMIT
