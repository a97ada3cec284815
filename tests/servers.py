"""Real processes for the tests: a Redis of their own and the real server on a real socket."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import redis
import requests

from tus_staging.embedded_redis import redis_server_binary

TOKENS = {"alice": "tok-alice", "bob": "tok-bob", "carol": "tok-carol"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise TimeoutError(f"{what} not ready after {timeout} s")


class RedisProcess:
    """A redis-server on a unix socket in a temp dir, with append-only persistence."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.socket = self.directory / "redis.sock"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def client(self) -> redis.Redis:
        return redis.Redis(unix_socket_path=str(self.socket))

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                redis_server_binary(),
                "--port",
                "0",
                "--unixsocket",
                str(self.socket),
                "--dir",
                str(self.directory),
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
                "--logfile",
                str(self.directory / "redis.log"),
            ],
            stdin=subprocess.DEVNULL,
        )
        wait_until(self._pings, 15, "redis")

    def _pings(self) -> bool:
        try:
            with self.client() as client:
                return bool(client.ping())
        except (redis.ConnectionError, redis.BusyLoadingError):
            return False

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(15)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


class ServerProcess:
    """``tus-staging serve`` as a subprocess, so that tests can kill -9 it and restart it."""

    def __init__(
        self,
        data_dir: Path,
        redis_url: str | None,
        tokens_file: Path | None,
        extra_args: list[str] | None = None,
    ):
        self.data_dir = data_dir
        self.redis_url = redis_url
        self.tokens_file = tokens_file
        self.extra_args = list(extra_args or [])
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir.parent / f"server-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def files_url(self) -> str:
        return f"{self.url}/files/"

    def command(self) -> list[str]:
        command = [
            sys.executable, "-m", "tus_staging.cli", "serve",
            "--port", str(self.port), "--data-dir", str(self.data_dir),
        ]  # fmt: skip
        if self.redis_url:
            command += ["--redis-url", self.redis_url]
        if self.tokens_file:
            command += ["--tokens-file", str(self.tokens_file)]
        return command + self.extra_args

    def start(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - kept open for the process's life
        env = {k: v for k, v in os.environ.items() if not k.startswith("TUS_STAGING_")}
        self.process = subprocess.Popen(
            self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env,
        )  # fmt: skip
        log.close()
        wait_until(self._answers, 30, f"server on port {self.port}")

    def _answers(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"server exited at start:\n{self.log()}")
        try:
            return requests.options(self.files_url, timeout=1).status_code == 204
        except requests.ConnectionError:
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 40) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout)
        self.process = None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()
