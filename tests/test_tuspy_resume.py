"""tuspy end to end, killed mid-upload and resumed by a new process from its URL storage.

The client runs in a separate Python process (tests/tuspy_upload_script.py) so that
SIGKILL leaves exactly what a crashed client leaves: a half-sent PATCH on a socket the
kernel closes, and the upload URL in tuspy's file storage.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .servers import TOKENS, ServerProcess

MiB = 1024 * 1024
SIZE = 64 * MiB
CHUNK = 5 * MiB
KILL_AFTER = 25 * MiB
SCRIPT = Path(__file__).with_name("tuspy_upload_script.py")


@dataclass
class Run:
    """What one run of the upload script reported."""

    start: int | None = None
    sent: int = 0  # bytes of PATCH bodies begun (the last one may be cut short by a kill)
    offsets: list[int] = field(default_factory=list)
    done: bool = False

    def read(self, line: str) -> None:
        word, *numbers = line.split()
        if word == "start":
            self.start = int(numbers[0])
        elif word == "send":
            self.sent += int(numbers[1])
        elif word == "offset":
            self.offsets.append(int(numbers[0]))
        elif word == "done":
            self.done = True


def start_script(server: ServerProcess, source: Path, storage: Path) -> subprocess.Popen[str]:
    command = [
        sys.executable, str(SCRIPT), server.files_url, TOKENS["alice"],
        str(source), str(storage), str(CHUNK),
    ]  # fmt: skip
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
        text=True,
    )  # fmt: skip


@pytest.mark.timeout(120)
def test_killed_tuspy_client_resumes_from_server_offset(
    server: ServerProcess, tmp_path: Path
) -> None:
    data = os.urandom(SIZE)
    source = tmp_path / "big-random.bin"
    source.write_bytes(data)
    storage = tmp_path / "tus-urls.json"

    first = Run()
    process = start_script(server, source, storage)
    try:
        assert process.stdout is not None
        for line in process.stdout:
            first.read(line)
            if line.startswith("send") and first.offsets and first.offsets[-1] >= KILL_AFTER:
                time.sleep(0.05)  # let part of this chunk go out, then crash mid-PATCH
                process.send_signal(signal.SIGKILL)
                break
    finally:
        if process.poll() is None:
            process.kill()
        rest, errors = process.communicate(timeout=30)
    for line in rest.splitlines():
        first.read(line)
    assert process.returncode == -signal.SIGKILL, f"first run ended by itself:\n{errors}"
    assert first.start == 0
    assert first.offsets[-1] >= KILL_AFTER
    assert not first.done

    second = Run()
    process = start_script(server, source, storage)
    output, errors = process.communicate(timeout=90)
    for line in output.splitlines():
        second.read(line)
    assert process.returncode == 0, errors
    assert second.done
    assert second.start is not None
    # It resumed from the server's offset: not from 0, and not from before anything the
    # server acknowledged to the first run.
    assert second.start > 0
    assert second.start >= first.offsets[-1]
    assert second.offsets[-1] == SIZE
    total_sent = first.sent + second.sent
    assert total_sent < SIZE + 2 * CHUNK, f"{total_sent} bytes sent for a {SIZE}-byte file"

    staged = server.data_dir / "staging" / "alice" / source.name
    assert staged.stat().st_size == SIZE
    assert hashlib.md5(staged.read_bytes()).hexdigest() == hashlib.md5(data).hexdigest()
    sidecar = json.loads((server.data_dir / "metadata" / "alice" / source.name).read_text())
    assert sidecar["md5"] == hashlib.md5(data).hexdigest()
    assert sidecar["size"] == SIZE
    assert sidecar["isText"] is False
