"""``tus-staging upload`` against the real server: files and directories, exit status."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import md5_of
from .fault_proxy import FaultProxy, throttle
from .servers import TOKENS, RedisProcess, ServerProcess, metric_values


def run_upload(server: ServerProcess, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    env.pop("TUS_STAGING_TOKEN", None)
    return subprocess.run(
        [sys.executable, "-m", "tus_staging.cli", "upload", "--url", server.files_url, *args],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_upload_directory_keeps_relative_paths(server: ServerProcess, tmp_path: Path) -> None:
    source = tmp_path / "run7"
    (source / "raw").mkdir(parents=True)
    (source / "notes.txt").write_text("line 1\nline 2\n")
    (source / "raw" / "reads.bin").write_bytes(os.urandom(3_000_000))
    (source / "raw" / "empty.dat").write_bytes(b"")
    single = tmp_path / "single.bin"
    single.write_bytes(os.urandom(100_000))
    result = run_upload(
        server, tmp_path, str(source), str(single),
        "--token", TOKENS["alice"], "--dest", "incoming", "--chunk-size", "1M",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    home = server.data_dir / "staging" / "alice" / "incoming"
    for local, staged in [
        (source / "notes.txt", home / "run7" / "notes.txt"),
        (source / "raw" / "reads.bin", home / "run7" / "raw" / "reads.bin"),
        (source / "raw" / "empty.dat", home / "run7" / "raw" / "empty.dat"),
        (single, home / "single.bin"),
    ]:
        assert md5_of(staged) == md5_of(local)


def test_upload_failures_exit_non_zero_with_a_message(
    server: ServerProcess, tmp_path: Path
) -> None:
    missing = run_upload(server, tmp_path, str(tmp_path / "nope"), "--token", TOKENS["alice"])
    assert missing.returncode == 2
    assert "no such file" in missing.stderr
    data = tmp_path / "d.bin"
    data.write_bytes(b"abc")
    refused = run_upload(server, tmp_path, str(data), "--token", "not-a-token")
    assert refused.returncode == 1
    assert "failed" in refused.stderr


def bytes_received(server: ServerProcess) -> float:
    return metric_values(server.url).get("tus_staging_bytes_received_total", 0.0)


def start_upload(
    server: ServerProcess, tmp_path: Path, *args: str, files_url: str | None = None
) -> subprocess.Popen:
    env = {
        **os.environ,
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "TUS_STAGING_TOKEN": "tok-alice",
    }
    url = files_url or server.files_url
    return subprocess.Popen(
        [sys.executable, "-m", "tus_staging.cli", "upload", "--url", url, *args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # A test run started in the background by a shell inherits SIGINT ignored, and so
        # would the CLI (Python only turns SIGINT into KeyboardInterrupt when it is not).
        preexec_fn=_default_sigint,
    )  # fmt: skip


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGKILL])
def test_interrupted_upload_resumes_when_run_again(
    server: ServerProcess, tmp_path: Path, stop: signal.Signals
) -> None:
    source = tmp_path / "batch"
    source.mkdir()
    sizes = [9_000_000, 7_000_000, 5_000_000]
    for index, size in enumerate(sizes):
        (source / f"part{index}.bin").write_bytes(os.urandom(size))
    total = sum(sizes)
    # Throttled, so that the stop lands mid-batch: unthrottled, the last 15 MB can arrive
    # in the 20 ms between two looks at the counter (seen on a fast machine).
    with FaultProxy(server.url, default=throttle(10_000_000)) as proxy:
        files_url = server.files_url.replace(server.url, proxy.url)
        first = start_upload(server, tmp_path, str(source), "--chunk-size", "1M",
                             files_url=files_url)  # fmt: skip
        deadline = time.monotonic() + 60
        while bytes_received(server) < 6_000_000 and time.monotonic() < deadline:
            time.sleep(0.02)
        first.send_signal(stop)
        _, stderr = first.communicate(timeout=30)
        if stop == signal.SIGINT:
            assert first.returncode == 130
            assert "run the same command again to resume" in stderr
        before_second = bytes_received(server)
        assert 0 < before_second < total
        second = start_upload(server, tmp_path, str(source), "--chunk-size", "1M",
                              files_url=files_url)  # fmt: skip
        _, stderr = second.communicate(timeout=120)
    assert second.returncode == 0, stderr
    sent_second = bytes_received(server) - before_second
    assert sent_second < total  # it resumed instead of starting over
    assert "resumed at" in stderr
    home = server.data_dir / "staging" / "alice" / "batch"
    for index in range(len(sizes)):
        assert md5_of(home / f"part{index}.bin") == md5_of(source / f"part{index}.bin")


def test_upload_retries_through_a_redis_outage(
    server: ServerProcess, tmp_path: Path, redis_proc: RedisProcess
) -> None:
    data = tmp_path / "patient.bin"
    data.write_bytes(os.urandom(4_000_000))
    redis_proc.stop()
    run = start_upload(server, tmp_path, str(data), "--retry-delay", "0.3")
    time.sleep(2)  # the client meets 503s and backs off
    assert run.poll() is None
    redis_proc.start()
    _, stderr = run.communicate(timeout=120)
    assert run.returncode == 0, stderr
    assert md5_of(server.data_dir / "staging" / "alice" / "patient.bin") == md5_of(data)


def test_upload_with_checksum(server: ServerProcess, tmp_path: Path) -> None:
    data = tmp_path / "checked.bin"
    data.write_bytes(os.urandom(3_000_000))
    result = run_upload(
        server, tmp_path, str(data), "--checksum", "--chunk-size", "1M", "--token", "tok-alice"
    )
    assert result.returncode == 0, result.stderr
    assert md5_of(server.data_dir / "staging" / "alice" / "checked.bin") == md5_of(data)
