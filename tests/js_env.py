"""What the tests that run JavaScript need: npm packages (``npm ci`` from a lock file,
once), Debian's Chromium, and files of random bytes to send."""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

JS_DIR = Path(__file__).parent / "js"
# As tests/js/chromium.mjs finds it.
CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
MiB = 1024 * 1024


INSTALLED_LOCK = ".installed-from"  # in node_modules: the sha256 of the lock file it came from


def _lock_digest(directory: Path) -> str:
    lock = directory / "package-lock.json"
    return hashlib.sha256(lock.read_bytes()).hexdigest() if lock.exists() else "no lock"


def _installed_is_current(directory: Path) -> bool:
    """node_modules was installed from the lock file as it is now (by content: a checkout
    or a copy can give an old lock a new mtime, and the other way round)."""
    modules = directory / "node_modules"
    stamp = modules / INSTALLED_LOCK
    if not (modules / ".package-lock.json").exists() or not stamp.exists():
        return False
    return stamp.read_text() == _lock_digest(directory)


def npm_install(directory: Path) -> Path:
    """Install ``directory``'s npm packages (``npm ci`` from the lock) unless already current;
    skips the test when node or npm is missing. Returns the node_modules directory."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip(
            "node and npm are needed for the JavaScript client tests (apt install nodejs npm)"
        )
    # So that concurrent pytest processes do not run npm in the same directory at once.
    guard_path = Path(tempfile.gettempdir()) / f"tus-staging-npm-{os.getuid()}.lock"
    with open(guard_path, "w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        if not _installed_is_current(directory):
            has_lock = (directory / "package-lock.json").exists()
            command = [npm, "ci" if has_lock else "install", "--no-audit", "--no-fund"]
            done = subprocess.run(
                command, cwd=directory, capture_output=True, text=True, timeout=600, check=False
            )
            if done.returncode != 0:
                pytest.fail(
                    f"{' '.join(command)} failed in {directory}:\n{done.stdout}\n{done.stderr}"
                )
            (directory / "node_modules" / INSTALLED_LOCK).write_text(_lock_digest(directory))
    return directory / "node_modules"


def require_chromium() -> None:
    if not CHROMIUM.exists():
        pytest.skip(
            f"no Chromium at {CHROMIUM} (apt install chromium, or set CHROMIUM_PATH); "
            "browsers are not downloaded"
        )


def random_file(path: Path, size: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        remaining = size
        while remaining:
            block = min(remaining, 4 * MiB)
            handle.write(os.urandom(block))
            remaining -= block
    return path
