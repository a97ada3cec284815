"""``tus-staging serve`` without ``--redis-url``: the server runs its own redis-server
under DATA/redis/, stops it with itself (SIGTERM, or kill -9 through PR_SET_PDEATHSIG),
and every upload survives the restart; plus single-user mode and its loopback guard.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
import requests

from tus_staging.embedded_redis import PID_FILE, socket_path_for

from .servers import (
    TOKENS,
    ServerProcess,
    fast_forward_lock_expiry,
    free_port,
    open_raw_patch,
    wait_delivered,
    wait_until,
)
from .tus_client import TusTestClient

MiB = 1024 * 1024

StartServer = Callable[..., ServerProcess]


def is_alive(pid: int) -> bool:
    """A running process (a zombie nobody has reaped yet counts as dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X")


def processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line contains ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline and is_alive(int(entry.name)):
            found.append(int(entry.name))
    return found


class Embedded:
    """Where a server's embedded Redis lives, and its process as the pid file names it."""

    def __init__(self, data_dir: Path):
        self.directory = data_dir / "redis"
        self.socket = socket_path_for(self.directory)

    def pid(self) -> int:
        pid_file = self.directory / PID_FILE
        wait_until(pid_file.exists, 10, f"{pid_file}")
        return int(pid_file.read_text().strip())

    def client(self) -> redis.Redis:
        return redis.Redis(unix_socket_path=str(self.socket))

    def assert_gone(self, pid: int, timeout: float = 10) -> None:
        wait_until(lambda: not is_alive(pid), timeout, f"exit of embedded redis-server {pid}")
        assert processes_mentioning(str(self.socket)) == []


@pytest.fixture
def start_embedded(tmp_path: Path) -> Iterator[StartServer]:
    """Start servers with an embedded Redis; stop them (and, failing that, their Redis)."""
    started: list[tuple[ServerProcess, Embedded]] = []

    def start(tokens_file: Path | None, *extra_args: str) -> ServerProcess:
        data_dir = tmp_path / "data"
        server = ServerProcess(data_dir, None, tokens_file, list(extra_args))
        server.start()
        started.append((server, Embedded(data_dir)))
        return server

    yield start
    for server, embedded in started:
        server.stop()
        for pid in processes_mentioning(str(embedded.socket)):
            os.kill(pid, signal.SIGKILL)  # a redis-server our server failed to stop


def terminate(server: ServerProcess) -> int:
    """SIGTERM, as an init system stops the service; the exit status."""
    assert server.process is not None
    server.process.send_signal(signal.SIGTERM)
    status = server.process.wait(40)
    server.process = None
    return status


def finish(client: TusTestClient, url: str, data: bytes) -> None:
    offset = client.offset(url)
    response = client.patch(url, offset, data[offset:])
    assert response.status_code == 204, response.text
    assert response.headers["Upload-Offset"] == str(len(data))


def assert_staged(server: ServerProcess, user: str, name: str, data: bytes) -> None:
    staged = server.data_dir / "staging" / user / name
    assert hashlib.md5(staged.read_bytes()).hexdigest() == hashlib.md5(data).hexdigest()
    sidecar = json.loads((server.data_dir / "metadata" / user / name).read_text())
    assert sidecar["md5"] == hashlib.md5(data).hexdigest()
    assert sidecar["size"] == len(data)


def test_sigterm_stops_embedded_redis_and_uploads_survive_restart(
    start_embedded: StartServer, tokens_file: Path
) -> None:
    server = start_embedded(tokens_file)
    embedded = Embedded(server.data_dir)
    first_pid = embedded.pid()
    assert is_alive(first_pid)
    assert processes_mentioning(str(embedded.socket)) == [first_pid]

    alice = TusTestClient(server.files_url, TOKENS["alice"])
    data = os.urandom(6 * MiB + 333)
    half = len(data) // 2
    url = alice.create_url(len(data), "survivor.bin")
    response = alice.patch(url, 0, data[:half])
    assert response.status_code == 204, response.text
    assert alice.offset(url) == half

    assert terminate(server) == 0, server.log()
    embedded.assert_gone(first_pid)
    assert not embedded.socket.exists()

    server.start()
    second_pid = embedded.pid()
    assert second_pid != first_pid
    assert is_alive(second_pid)
    assert alice.offset(url) == half
    finish(alice, url, data)
    assert_staged(server, "alice", "survivor.bin", data)


def test_kill_9_takes_embedded_redis_along_and_upload_resumes(
    start_embedded: StartServer, tokens_file: Path
) -> None:
    # Checkpoints every 1 MiB, so that part of the body is committed before the crash.
    server = start_embedded(tokens_file, "--checkpoint-bytes", "1M")
    embedded = Embedded(server.data_dir)
    redis_pid = embedded.pid()

    alice = TusTestClient(server.files_url, TOKENS["alice"])
    data = os.urandom(8 * MiB + 4321)
    sent = 5 * MiB + 512 * 1024 + 5
    url = alice.create_url(len(data), "crashed.bin")
    sock = open_raw_patch(url, TOKENS["alice"], 0, len(data))
    try:
        sock.sendall(data[:sent])
        wait_delivered(sock)
        time.sleep(0.2)  # let the checkpoints land
        server.kill()  # mid-body, with bytes written past the last checkpoint
    finally:
        sock.close()
    embedded.assert_gone(redis_pid)

    server.start()
    # The dead server's lock would block the upload until its TTL ran out (30 s).
    with embedded.client() as client:
        fast_forward_lock_expiry(client)
    offset = alice.offset(url)
    assert 3 * MiB <= offset <= sent, f"offset {offset} after kill -9 with {sent} bytes sent"
    finish(alice, url, data)
    assert_staged(server, "alice", "crashed.bin", data)


def test_single_user_mode_on_loopback_needs_no_credentials(
    start_embedded: StartServer,
) -> None:
    server = start_embedded(None)
    anonymous = TusTestClient(server.files_url, None)
    data = b"line one\nline two\n" * 5000
    anonymous.upload(data, "solo.txt", chunk=30_000)
    assert_staged(server, "local", "solo.txt", data)
    sidecar = json.loads((server.data_dir / "metadata" / "local" / "solo.txt").read_text())
    assert sidecar["lineCount"] == "10000"
    assert sidecar["isText"] is True


def test_single_user_mode_refuses_a_public_host(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    port = free_port()
    command = [
        sys.executable, "-m", "tus_staging.cli", "serve", "--host", "0.0.0.0",
        "--port", str(port), "--data-dir", str(data_dir),
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUS_STAGING_")}
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=60, env=env, stdin=subprocess.DEVNULL
    )
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert "0.0.0.0" in output
    assert "--tokens-file" in output
    assert "Traceback" not in output, output
    with pytest.raises(requests.ConnectionError):
        requests.options(f"http://127.0.0.1:{port}/files/", timeout=2)
    # Whatever it started on the way, it stopped.
    assert processes_mentioning(str(socket_path_for(data_dir / "redis"))) == []
