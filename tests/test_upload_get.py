"""GET /files/{id}: a finished upload's bytes (with Range), as tusd serves them; never the
bytes of an unfinished upload, another user's, or a file that is no longer the upload's."""

from __future__ import annotations

import gzip
import os

import pytest
import requests

from .checks import staged
from .ietf_client import IetfClient
from .servers import TOKENS, InProcessServer
from .tus_client import TusTestClient

pytestmark = pytest.mark.in_process


def get(url: str, token: str | None = TOKENS["alice"], **fields: str) -> requests.Response:
    """GET with header fields given as keywords: ``Tus_Resumable`` is ``Tus-Resumable``."""
    headers = {name.replace("_", "-"): value for name, value in fields.items()}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return requests.get(url, headers=headers, timeout=30)


def test_a_finished_upload_is_served_whole_and_in_ranges(alice: TusTestClient) -> None:
    data = os.urandom(3 * 1024 * 1024 + 5)
    url = alice.upload(data, "served.bin", destPath="out")
    whole = get(url)
    assert whole.status_code == 200
    assert whole.content == data
    assert whole.headers["Content-Type"] == "application/octet-stream"
    assert whole.headers["Content-Disposition"] == "attachment; filename*=UTF-8''served.bin"
    part = get(url, Range="bytes=100-199")
    assert (part.status_code, part.content) == (206, data[100:200])
    assert part.headers["Content-Range"] == f"bytes 100-199/{len(data)}"
    tail = get(url, Range="bytes=-10")
    assert (tail.status_code, tail.content) == (206, data[-10:])
    assert get(url, Range=f"bytes={len(data)}-").status_code == 416
    # A browser visiting the URL sends no Tus-Resumable; tus clients' GETs are the same.
    assert get(url, Tus_Resumable="1.0.0").content == data


def test_a_look_alike_beside_the_file_is_never_served(
    server: InProcessServer, alice: TusTestClient
) -> None:
    url = alice.upload(b"the real content", "report.csv")
    beside = staged(server, "alice", "report.csv.gz")
    beside.write_bytes(gzip.compress(b"something else"))
    answer = get(url, Accept_Encoding="gzip, br")
    assert answer.content == b"the real content"
    assert "Content-Encoding" not in answer.headers


def test_unfinished_unknown_and_foreign_uploads(server: InProcessServer, alice, bob) -> None:
    url = alice.create_url(10, "unfinished.bin")
    alice.patch(url, 0, b"12345")
    unfinished = get(url)
    assert unfinished.status_code == 409
    assert "not complete (5 of 10 bytes)" in unfinished.text
    assert b"12345" not in unfinished.content
    done = alice.upload(b"mine", "mine.bin")
    assert get(done, TOKENS["bob"]).status_code == 404
    assert get(done, None).status_code == 401
    assert get(server.files_url + "0" * 32).status_code == 404
    assert get(server.files_url + "not-an-id").status_code == 404
    alice.delete(done)
    assert get(done).status_code == 404  # terminated (its record is gone)


def test_a_file_no_longer_the_uploads(server: InProcessServer, alice: TusTestClient) -> None:
    first = alice.upload(b"first version", "same.txt")
    second = alice.upload(b"second version", "same.txt")
    assert get(second).content == b"second version"
    replaced = get(first)
    assert replaced.status_code == 404 and "replaced since" in replaced.text
    moved_away = alice.upload(b"moved", "moved.txt")
    headers = {"Authorization": f"Bearer {TOKENS['alice']}"}
    requests.patch(
        f"{server.url}/mv/moved.txt", json={"newPath": "elsewhere.txt"}, headers=headers, timeout=30
    ).raise_for_status()
    assert get(moved_away).status_code == 404
    deleted = alice.upload(b"deleted", "deleted.txt")
    requests.delete(f"{server.url}/delete/deleted.txt", headers=headers, timeout=30)
    assert get(deleted).status_code == 404
    # A file written over in place (same name, other bytes) is not the upload's either.
    rewritten = alice.upload(b"original", "rewritten.txt")
    staged(server, "alice", "rewritten.txt").write_bytes(b"tampered!")
    assert get(rewritten).status_code == 404


def test_a_partial_upload_of_a_concatenation_has_no_file(alice: TusTestClient) -> None:
    part = alice.create_partial(b"abc")
    answer = get(part)
    assert answer.status_code == 409 and "partial upload" in answer.text


def test_the_drafts_get_is_offset_retrieval(server: InProcessServer, alice: TusTestClient) -> None:
    url = alice.create_url(10, "retrieved.bin")
    alice.patch(url, 0, b"1234")
    path = url.removeprefix(server.url)
    answer = IetfClient(server, TOKENS["alice"], 7).send("GET", path).final
    assert answer.status == 204
    assert (answer.headers["upload-offset"], answer.headers["upload-complete"]) == ("4", "?0")
    assert answer.body == b""
