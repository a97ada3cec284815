"""Running ``tus-staging`` client commands as their own processes, and seeing what the
server logged about them or sent them."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import pty
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

from .fault_proxy import READ_SIZE, FaultProxy
from .servers import TOKENS, ServerProcess

LOG_TIME = "%Y-%m-%d %H:%M:%S,%f"


def cli_env(tmp_path: Path, **variables: str) -> dict[str, str]:
    """This machine's environment without TUS_STAGING_*, a cache of the test's own, alice's
    token, and ``variables``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUS_STAGING_")}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    env["TUS_STAGING_TOKEN"] = TOKENS["alice"]
    env.update(variables)
    return env


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "tus_staging.cli", *args]


def run_cli(tmp_path: Path, *args: str, **variables: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command(*args), env=cli_env(tmp_path, **variables), capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip


def start_cli(tmp_path: Path, *args: str, **variables: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        command(*args), env=cli_env(tmp_path, **variables), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
        # A test run started in the background by a shell inherits SIGINT ignored, and so
        # would the CLI (Python only turns SIGINT into KeyboardInterrupt when it is not).
        preexec_fn=_default_sigint,
    )  # fmt: skip


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class OnTerminal:
    """A CLI process whose stderr is a terminal (a pty, 120 columns), as a user sees it;
    everything it writes there is collected in ``output``."""

    def __init__(self, tmp_path: Path, *args: str, **variables: str):
        leader, follower = pty.openpty()
        fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        self._leader = leader
        self._chunks: list[bytes] = []
        self.process = subprocess.Popen(
            command(*args), env=cli_env(tmp_path, **variables), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=follower, preexec_fn=_default_sigint,
        )  # fmt: skip
        os.close(follower)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        with contextlib.suppress(OSError):  # EIO once the process has gone
            while data := os.read(self._leader, 65536):
                self._chunks.append(data)

    @property
    def output(self) -> str:
        return b"".join(self._chunks).decode(errors="replace")

    def wait(self, timeout: float = 120) -> int:
        code = self.process.wait(timeout)
        self._reader.join(10)
        os.close(self._leader)
        return code


def access_log(server: ServerProcess, from_byte: int = 0) -> list[dict[str, str]]:
    """The server's request log lines from byte ``from_byte`` on as fields, with ``start``
    and ``end`` (datetimes). Whole lines only: the server may be writing the last one."""
    with open(server.log_path, "rb") as handle:
        handle.seek(from_byte)
        text = handle.read().decode(errors="replace")
    lines = []
    for line in text.split("\n")[:-1]:
        if " tus_staging.access " not in line:
            continue
        date, clock, _, _, *pairs = line.split(" ")
        fields: dict = dict(pair.split("=", 1) for pair in pairs if "=" in pair)
        fields["end"] = datetime.strptime(f"{date} {clock}", LOG_TIME)
        fields["start"] = fields["end"] - timedelta(milliseconds=float(fields["duration_ms"]))
        lines.append(fields)
    return lines


class DownloadProxy(FaultProxy):
    """A proxy that counts the bytes the server sends back (``received``), at most
    ``rate`` bytes per second when given."""

    def __init__(self, target_url: str, rate: float | None = None):
        super().__init__(target_url)
        self.rate = rate
        self.received = 0

    def quiet_down(self) -> None:
        """Wait until every connection so far is closed; then count from 0, at full speed."""
        for connection in self.connections:
            assert connection.closed.wait(10), "a connection through the proxy stayed open"
        self.rate, self.received = None, 0

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        started, count = time.monotonic(), 0
        with contextlib.suppress(OSError):
            while data := await reader.read(READ_SIZE):
                writer.write(data)
                await writer.drain()
                count += len(data)
                self.received += len(data)
                if self.rate is not None:
                    await asyncio.sleep(max(0.0, started + count / self.rate - time.monotonic()))
