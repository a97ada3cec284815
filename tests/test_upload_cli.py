"""``tus-staging upload`` against the real server: files and directories, exit status."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from .conftest import md5_of
from .servers import TOKENS, ServerProcess


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
