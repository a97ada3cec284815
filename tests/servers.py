"""Real processes for the tests: a Redis of their own and the real server on a real socket."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import urlsplit

import redis
import requests
from aiohttp import web

from store.keys import EXPIRY_INDEX_KEY, upload_key
from tus_staging.app import create_app, make_runner
from tus_staging.cli import build_parser, config_from
from tus_staging.config import Config
from tus_staging.embedded_redis import redis_server_binary
from tus_staging.log_format import TextFormatter

TOKENS = {"alice": "tok-alice", "bob": "tok-bob", "carol": "tok-carol"}


def write_tokens_file(path: Path) -> Path:
    """A tokens file of the TOKENS users at ``path``."""
    path.write_text(
        "# test users\n" + "".join(f"{token} {user}\n" for user, token in TOKENS.items())
    )
    return path


def metric_values(base_url: str) -> dict[str, float]:
    """The server's /metrics as {series with its labels: value} (all workers summed)."""
    values = {}
    for line in requests.get(f"{base_url}/metrics", timeout=10).text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def ephemeral_ports_start() -> int:
    """The first port the kernel hands out as a connection's source port."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A loopback port free now, for a process started a moment later. Taken below the
    kernel's ephemeral range: a port the kernel gave out (bind to 0) can become some
    outgoing connection's source port before the process binds it, and then the start
    fails with "Address already in use"."""
    pick = random.SystemRandom()
    for _ in range(100):
        port = pick.randrange(10_000, ephemeral_ports_start())
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
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
    """A redis-server with append-only persistence in a temp dir: on a unix socket, or on
    a loopback TCP port when given one (replicas, cluster nodes), with ``extra_args``."""

    def __init__(
        self,
        directory: Path,
        port: int = 0,
        extra_args: Sequence[str] = (),
        password: str = "",  # the one in extra_args' --requirepass, for the test's clients
    ):
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.socket = self.directory / "redis.sock"
        self.port = port
        self.password = password
        self.extra_args = list(extra_args)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}" if self.port else f"unix://{self.socket}"

    def client(self) -> redis.Redis:
        if self.port:
            return redis.Redis(port=self.port, socket_timeout=5, password=self.password or None)
        return redis.Redis(unix_socket_path=str(self.socket))

    def start(self) -> None:
        listen = ["--port", str(self.port), "--bind", "127.0.0.1"] if self.port else [
            "--port", "0", "--unixsocket", str(self.socket),
        ]  # fmt: skip
        self.process = subprocess.Popen(
            [
                redis_server_binary(),
                *listen,
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
                *self.extra_args,
            ],
            stdin=subprocess.DEVNULL,
        )
        wait_until(self._pings, 15, "redis")

    def _pings(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"redis-server exited at start: {self.log()}")
        try:
            with self.client() as client:
                return bool(client.ping())
        except (redis.ConnectionError, redis.BusyLoadingError):
            return False

    def log(self) -> str:
        path = self.directory / "redis.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process and self.process.poll() is None:
            if sig != signal.SIGKILL:
                self.process.send_signal(signal.SIGCONT)  # a paused one could not stop
            # Redis ignores a SIGTERM while it writes its first AOF (just after a replica
            # was promoted, say): asked again, it stops once that is written.
            deadline = time.monotonic() + 15
            while True:
                self.process.send_signal(sig)
                try:
                    self.process.wait(0.5)
                    break
                except subprocess.TimeoutExpired:
                    if time.monotonic() > deadline:
                        raise
        self.process = None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def pause(self) -> None:
        """SIGSTOP, and wait until the process is stopped (the signal lands a moment later)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)
        stat = Path(f"/proc/{self.process.pid}/stat")
        wait_until(lambda: stat.read_text().rsplit(")", 1)[1].split()[0] == "T", 5, "SIGSTOP")

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def restart(self) -> None:
        self.stop()
        self.start()


class ServerAddress:
    """Where a test server listens, and what it serves: the fields and ``serve`` arguments
    the in-process server and the server process share."""

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

    def serve_args(self) -> list[str]:
        """``serve`` and its flags."""
        args = ["serve", "--port", str(self.port), "--data-dir", str(self.data_dir)]
        if self.redis_url:
            args += ["--redis-url", self.redis_url]
        if self.tokens_file:
            args += ["--tokens-file", str(self.tokens_file)]
        return args + self.extra_args

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def files_url(self) -> str:
        return f"{self.url}/files/"


class LogLines(logging.Handler):
    """The log records of an in-process server, as text lines."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(TextFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


class InProcessServer(ServerAddress):
    """The real app on a real socket, in this test process (a thread with its own event
    loop): for tests of what the server answers, which need no process to kill. Starts in
    milliseconds where a process takes a second. Same attributes as :class:`ServerProcess`
    for what it can do."""

    def __init__(
        self,
        data_dir: Path,
        redis_url: str | None,
        tokens_file: Path | None,
        extra_args: list[str] | None = None,
    ):
        super().__init__(data_dir, redis_url, tokens_file, extra_args)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.runner: web.AppRunner | None = None
        self.thread: threading.Thread | None = None
        self.logs = LogLines()

    def config(self) -> Config:
        return config_from(build_parser().parse_args(self.serve_args()))

    def start(self) -> None:
        assert self.redis_url is not None, "an in-process server needs a Redis of the test's"
        config = self.config()
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self.loop = loop
            try:
                app = create_app(config, self.redis_url or "")
                self.runner = make_runner(app, config, shutdown_timeout=30)
                loop.run_until_complete(self.runner.setup())
                site = web.TCPSite(self.runner, "127.0.0.1", self.port)
                loop.run_until_complete(site.start())
            except BaseException as error:
                failure.append(error)
                started.set()
                return
            started.set()
            loop.run_forever()
            loop.run_until_complete(self.runner.cleanup())
            loop.close()

        logging.getLogger().addHandler(self.logs)
        logging.getLogger("tus_staging").setLevel(logging.INFO)  # the request log, for tests
        self.thread = threading.Thread(target=run, name=f"server-{self.port}", daemon=True)
        self.thread.start()
        started.wait(30)
        if failure:
            raise RuntimeError(f"in-process server failed to start: {failure[0]!r}")

    def log(self) -> str:
        return "\n".join(self.logs.lines)[-5000:]

    def logged(self, text: str) -> bool:
        """Whether ``text`` appears anywhere in the server's log so far."""
        return any(text in line for line in self.logs.lines)

    def stop(self) -> None:
        if self.thread is None or self.loop is None:
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(40)
        logging.getLogger().removeHandler(self.logs)
        self.thread = None


class ServerProcess(ServerAddress):
    """``tus-staging serve`` as a subprocess, so that tests can kill -9 it and restart it."""

    def __init__(
        self,
        data_dir: Path,
        redis_url: str | None,
        tokens_file: Path | None,
        extra_args: list[str] | None = None,
        env: dict[str, str] | None = None,
    ):
        super().__init__(data_dir, redis_url, tokens_file, extra_args)
        # Extra environment for the next start() (e.g. TUS_STAGING_CRASH_AT); set it to
        # None before a restart to start the same server without it.
        self.env = dict(env or {})
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir.parent / f"server-{self.port}.log"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "tus_staging.cli", *self.serve_args()]

    def start(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - kept open for the process's life
        env = {k: v for k, v in os.environ.items() if not k.startswith("TUS_STAGING_")}
        env["PYTHONFAULTHANDLER"] = "1"  # SIGABRT dumps every thread's stack into the log
        env.update(self.env or {})
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

    def logged(self, text: str) -> bool:
        """Whether ``text`` appears anywhere in the server's log so far."""
        return text in self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 40) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                # Say where it hung: faulthandler writes the stacks to the log on SIGABRT.
                self.process.send_signal(signal.SIGABRT)
                try:
                    self.process.wait(10)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(10)
                raise AssertionError(
                    f"server did not stop within {timeout} s of signal {sig}; log:\n{self.log()}"
                ) from None
        self.process = None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()


# --- raw sockets: a PATCH whose body the test sends (or withholds) byte by byte ---------------


def open_raw_patch(
    upload_url: str,
    token: str | None,
    offset: int,
    content_length: int,
    request_id: str | None = None,
) -> socket.socket:
    """Connect and send a PATCH request head declaring ``content_length``; no body yet.
    ``request_id`` (X-Request-ID) finds the request's line in the server's log."""
    parts = urlsplit(upload_url)
    assert parts.hostname is not None and parts.port is not None
    sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
    lines = [
        f"PATCH {parts.path} HTTP/1.1",
        f"Host: {parts.netloc}",
        "Tus-Resumable: 1.0.0",
        "Content-Type: application/offset+octet-stream",
        f"Upload-Offset: {offset}",
        f"Content-Length: {content_length}",
    ]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    if request_id:
        lines.append(f"X-Request-ID: {request_id}")
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    return sock


def unsent_bytes(sock: socket.socket) -> int:
    """Bytes in the socket's send queue that the peer's kernel has not acknowledged."""
    raw = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, struct.pack("i", 0))
    return struct.unpack("i", raw)[0]


def _peer_receive_queue(sock: socket.socket) -> int | None:
    """Bytes waiting in the *server's* kernel receive queue of this connection (loopback)."""
    local_port = sock.getsockname()[1]
    server_port = sock.getpeername()[1]
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as handle:
            for line in handle.readlines()[1:]:
                fields = line.split()
                local, remote, queues = fields[1], fields[2], fields[4]
                if (
                    int(local.rsplit(":", 1)[1], 16) == server_port
                    and int(remote.rsplit(":", 1)[1], 16) == local_port
                ):
                    return int(queues.split(":")[1], 16)
    return None


def wait_delivered(sock: socket.socket, timeout: float = 20) -> None:
    """Wait until every byte sent on ``sock`` has been read by the server process."""
    wait_until(
        lambda: unsent_bytes(sock) == 0 and _peer_receive_queue(sock) in (0, None),
        timeout,
        "delivery of the sent bytes to the server",
    )


def read_response(sock: socket.socket) -> tuple[int, dict[str, str]]:
    """Read one HTTP response head (status, headers with lower-case names) from ``sock``."""
    raw = b""
    while b"\r\n\r\n" not in raw:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError(f"connection closed before a full response head: {raw!r}")
        raw += data
    status_line, *header_lines = raw.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers


def fast_forward_expiry(client: redis.Redis, upload_id: str) -> None:
    """Make an upload's expiry a second ago, as if its time had passed (no sleeping)."""
    past = time.time() - 1
    client.hset(upload_key(upload_id), "expires", repr(past))
    client.zadd(EXPIRY_INDEX_KEY, {upload_id: past})


def fast_forward_lock_expiry(client: redis.Redis) -> int:
    """Delete every upload and destination lock, as if their TTL had run out; how many.

    Only for use when no live process holds a lock (after a kill -9): the locks of a dead
    process otherwise block its uploads until the lock TTL runs out."""
    keys = list(client.scan_iter(match="tus-staging:{*}:lock"))
    return int(client.delete(*keys)) if keys else 0


class JsonHandler(BaseHTTPRequestHandler):
    """Base for the small real HTTP services the tests run (auth service, hooks)."""

    def answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass
