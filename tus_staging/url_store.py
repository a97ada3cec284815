"""Where `tus-staging upload` remembers its unfinished uploads, safe for many processes.

tuspy's ``FileStorage`` (TinyDB) keeps the JSON file open and rewrites it in place, so
two CLI runs at once (two terminals, a loop in a job script) can read a half-written
file or lose each other's entries. This store implements tuspy's ``Storage`` interface
over the same kind of file: every operation takes an exclusive ``flock`` on a lock
file beside it, reads the whole map, and a change is written the way sidecars are
(temp file, fsync, rename) — so readers see the old map or the new one, never half.

The file holds ``{fingerprint: upload URL}``. A file in TinyDB's layout (what earlier
versions wrote) is read as well, so uploads started before an upgrade still resume.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from tusclient.storage.interface import Storage

from store.sidecar import read_json_object, write_json_atomically


class LockedUrlStore(Storage):
    def __init__(self, path: Path):
        self.path = path
        self.lock_path = path.with_name(path.name + ".lock")
        path.parent.mkdir(parents=True, exist_ok=True)

    def get_item(self, key: str) -> str | None:
        with self._locked():
            return self._read().get(key)

    def set_item(self, key: str, url: str) -> None:
        with self._locked():
            urls = self._read()
            urls[key] = url
            self._write(urls)

    def remove_item(self, key: str) -> None:
        with self._locked():
            urls = self._read()
            if urls.pop(key, None) is not None:
                self._write(urls)

    def close(self) -> None:
        """Nothing stays open between operations."""

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _read(self) -> dict[str, str]:
        # Missing or unreadable: forget it (those uploads start again), never crash.
        document = read_json_object(self.path) or {}
        table = document.get("_default")
        if isinstance(table, dict):  # TinyDB: {"_default": {"1": {"key": k, "url": u}}}
            rows = [row for row in table.values() if isinstance(row, dict)]
            return {str(row["key"]): str(row["url"]) for row in rows if "key" in row}
        return {str(key): str(url) for key, url in document.items()}

    def _write(self, urls: dict[str, str]) -> None:
        write_json_atomically(self.path, urls)
