"""The client's resume store: keys of everything that must match, safe for several CLI
processes at once, earlier layouts read without a crash and never resumed."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from tusclient.storage.filestorage import FileStorage

from tus_staging.url_store import ResumeStore, resume_key, token_identity

IDENTITY = {
    "kind": "upload",
    "endpoint": "http://127.0.0.1:1080/files/",
    "user": token_identity("tok-alice"),
    "destination": "cliA/run.dat",
    "path": "/home/alice/a/run.dat",
    "size": 1048576,
    "mtime_ns": 1_700_000_000_000_000_000,
    "fingerprint": "0f723ae7f9bf07744445e93ac5595156",
}
fields = st.sampled_from(sorted(IDENTITY))
values = st.one_of(st.text(max_size=40), st.integers(min_value=-(2**63), max_value=2**63))


@given(fields, values)
def test_any_changed_field_gives_another_key(field: str, value: str | int) -> None:
    changed = {**IDENTITY, field: value}
    assert (resume_key(**changed) == resume_key(**IDENTITY)) == (changed == IDENTITY)


@given(st.permutations(sorted(IDENTITY)))
def test_the_order_of_the_fields_does_not_matter(order: list[str]) -> None:
    assert resume_key(**{name: IDENTITY[name] for name in order}) == resume_key(**IDENTITY)


@given(st.text(min_size=1), st.text(min_size=1))
def test_tokens_are_told_apart(one: str, other: str) -> None:
    assert (token_identity(one) == token_identity(other)) == (one == other)


def test_put_get_remove(tmp_path: Path) -> None:
    store = ResumeStore(tmp_path / "cache" / "uploads.json")
    assert store.get("a") is None
    store.put("a", {"url": "http://x/files/1"})
    store.put("a", {"url": "http://x/files/2"})
    store.put("b", {"url": "http://x/files/3"})
    assert store.get("a") == {"url": "http://x/files/2"}
    store.remove("a")
    store.remove("never-there")
    assert store.get("a") is None
    reopened = ResumeStore(tmp_path / "cache" / "uploads.json")
    assert reopened.get("b") == {"url": "http://x/files/3"}


def test_the_token_is_not_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "uploads.json"
    key = resume_key(**{**IDENTITY, "user": token_identity("s3cr3t-token-value")})
    ResumeStore(path).put(key, {"url": "http://x/files/1"})
    assert "s3cr3t-token-value" not in path.read_text()


def test_earlier_layouts_are_read_as_empty_and_rewritten(tmp_path: Path) -> None:
    # A fingerprint alone named an entry then: two files with the same first 64 KiB and
    # size shared it. Such entries must never be resumed, and must not crash anything.
    tinydb = tmp_path / "tinydb.json"
    old = FileStorage(str(tinydb))
    old.set_item("1048576-0f723ae7f9bf07744445e93ac5595156", "http://x/files/old")
    old.close()
    flat = tmp_path / "flat.json"
    flat.write_text(json.dumps({"1048576-0f723ae7f9bf07744445e93ac5595156": "http://x/files/o"}))
    for path in (tinydb, flat):
        store = ResumeStore(path)
        assert store.get("1048576-0f723ae7f9bf07744445e93ac5595156") is None
        store.put("k", {"url": "http://x/files/new"})
        assert json.loads(path.read_text()) == {
            "format": 2,
            "entries": {"k": {"url": "http://x/files/new"}},
        }


def test_an_unreadable_file_is_forgotten_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "uploads.json"
    for text in ('{"half": "writ', "[1, 2]", '{"format": 2, "entries": [1]}'):
        path.write_text(text)
        store = ResumeStore(path)
        assert store.get("half") is None
        store.put("k", {"url": "http://x/files/9"})
        assert store.get("k") == {"url": "http://x/files/9"}


def test_entries_that_are_not_records_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "uploads.json"
    path.write_text(json.dumps({"format": 2, "entries": {"a": "url", "b": {"url": "u"}}}))
    store = ResumeStore(path)
    assert store.get("a") is None
    assert store.get("b") == {"url": "u"}


def _writer(path: str, worker: int, count: int) -> None:
    store = ResumeStore(Path(path))
    for index in range(count):
        store.put(f"w{worker}-{index}", {"url": f"http://x/files/{worker}/{index}"})
        assert store.get(f"w{worker}-{index}") == {"url": f"http://x/files/{worker}/{index}"}


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
    assert len(json.loads(path.read_text())["entries"]) == 4 * 60
