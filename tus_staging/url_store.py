"""Where the command-line client remembers unfinished transfers, safe for many processes.

An entry is found by a key that hashes everything that must be the same for a resume to
be right (`resume_key`): for an upload the server, who sends it (a hash of the token,
never the token), the destination, the local file's absolute path, size, mtime and a
fingerprint of its first bytes. Change any of them and the entry no longer matches: the
transfer starts afresh instead of continuing someone else's.

Every operation takes an exclusive ``flock`` on a lock file beside the store, reads the
whole map, and a change is written atomically (temp file, fsync, rename), so CLI runs
side by side (two terminals, ``--parallel``, a loop in a job script) neither read half a
file nor lose each other's entries.

Layout: ``{"format": 2, "entries": {key: {...}}}``. Files in earlier layouts
(``{fingerprint: url}``, or TinyDB's ``{"_default": ...}``) read as empty: those entries
were keyed by a fingerprint alone, which two different files can share, so none of them
is resumed; the next change rewrites the file in this layout.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from store.sidecar import read_json_object, write_json_atomically

FORMAT = 2
Entry = dict[str, Any]


def cache_dir() -> Path:
    """The client's own folder under the user's cache directory (XDG_CACHE_HOME)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tus-staging"


def resume_key(**identity: str | int) -> str:
    """One key for one combination of identity fields (order of the arguments aside)."""
    canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def token_identity(token: str | None) -> str:
    """Who a transfer belongs to, without keeping the secret: the token's sha256."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest() if token else ""


class ResumeStore:
    def __init__(self, path: Path):
        self.path = path
        self.lock_path = path.with_name(path.name + ".lock")
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)

    def get(self, key: str) -> Entry | None:
        with self._locked():
            return self._read().get(key)

    def put(self, key: str, entry: Entry) -> None:
        with self._locked():
            entries = self._read()
            entries[key] = entry
            self._write(entries)

    def remove(self, key: str) -> None:
        with self._locked():
            entries = self._read()
            if entries.pop(key, None) is not None:
                self._write(entries)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _read(self) -> dict[str, Entry]:
        # Missing, unreadable or an earlier layout: nothing to resume, never a crash.
        document = read_json_object(self.path) or {}
        entries = document.get("entries") if document.get("format") == FORMAT else None
        if not isinstance(entries, dict):
            return {}
        return {str(k): v for k, v in entries.items() if isinstance(v, dict)}

    def _write(self, entries: dict[str, Entry]) -> None:
        write_json_atomically(self.path, {"format": FORMAT, "entries": entries})
