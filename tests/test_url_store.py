"""The upload CLI's URL store: safe for several CLI processes at once, reads the old file."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

from tusclient.storage.filestorage import FileStorage

from tus_staging.url_store import LockedUrlStore


def test_set_get_remove(tmp_path: Path) -> None:
    store = LockedUrlStore(tmp_path / "cache" / "uploads.json")
    assert store.get_item("a") is None
    store.set_item("a", "http://x/files/1")
    store.set_item("a", "http://x/files/2")
    store.set_item("b", "http://x/files/3")
    assert store.get_item("a") == "http://x/files/2"
    store.remove_item("a")
    store.remove_item("never-there")
    assert store.get_item("a") is None
    assert LockedUrlStore(tmp_path / "cache" / "uploads.json").get_item("b") == "http://x/files/3"


def test_a_file_written_by_tuspy_file_storage_is_read(tmp_path: Path) -> None:
    path = tmp_path / "uploads.json"
    old = FileStorage(str(path))  # what earlier versions of the CLI used
    old.set_item("fingerprint-1", "http://x/files/old")
    old.close()
    store = LockedUrlStore(path)
    assert store.get_item("fingerprint-1") == "http://x/files/old"
    store.set_item("fingerprint-2", "http://x/files/new")  # rewritten in the new layout
    assert store.get_item("fingerprint-1") == "http://x/files/old"
    assert json.loads(path.read_text())["fingerprint-2"] == "http://x/files/new"


def test_an_unreadable_file_is_forgotten_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "uploads.json"
    path.write_text('{"half": "writ')
    store = LockedUrlStore(path)
    assert store.get_item("half") is None
    store.set_item("k", "http://x/files/9")
    assert store.get_item("k") == "http://x/files/9"


def _writer(path: str, worker: int, count: int) -> None:
    store = LockedUrlStore(Path(path))
    for index in range(count):
        store.set_item(f"w{worker}-{index}", f"http://x/files/{worker}/{index}")
        assert store.get_item(f"w{worker}-{index}") == f"http://x/files/{worker}/{index}"


def test_four_processes_at_once_lose_nothing(tmp_path: Path) -> None:
    # Read-modify-write from several processes: without the lock, entries go missing
    # (or a reader meets a half-written file).
    path = tmp_path / "uploads.json"
    workers = [
        multiprocessing.get_context("fork").Process(target=_writer, args=(str(path), w, 60))
        for w in range(4)
    ]
    for process in workers:
        process.start()
    for process in workers:
        process.join(60)
        assert process.exitcode == 0
    urls = json.loads(path.read_text())
    assert len(urls) == 4 * 60
