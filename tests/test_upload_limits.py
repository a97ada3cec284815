"""Uploads that cannot be staged, and what one user may hold: clear answers, never a 500,
and nothing left behind."""

from __future__ import annotations

import hashlib
import os

import pytest
import requests

from .checks import sidecar, staged
from .servers import TOKENS
from .test_tus_errors import assert_refused
from .tus_client import TusTestClient

pytestmark = pytest.mark.in_process


@pytest.mark.parametrize("length", [232, 255])
def test_names_up_to_255_bytes_are_staged(server, alice: TusTestClient, length: int) -> None:
    name = "é" * ((length - 4) // 2) + "x" * ((length - 4) % 2) + ".txt"
    assert len(name.encode()) == length
    data = os.urandom(1000)
    alice.upload(data, name)
    assert staged(server, "alice", name).read_bytes() == data
    assert sidecar(server, "alice", name)["md5"] == hashlib.md5(data).hexdigest()
    listed = requests.get(
        f"{server.url}/metadata/{name}", headers=alice.headers(), timeout=10
    ).json()
    assert listed["uploadId"]  # the sidecar written at finalize, not a recomputation


def test_a_file_where_the_folder_should_be_blocks_with_409_and_delete_still_works(
    server, alice: TusTestClient
) -> None:
    url = alice.create_url(5, "f.bin", destPath="results")
    # After creation, something takes the folder's place.
    staged(server, "alice", "results").write_bytes(b"a file")
    response = alice.patch(url, 0, b"12345")
    assert response.status_code == 409, response.text
    assert "DELETE the upload" in response.text and "\n" not in response.text.strip()
    head = alice.head(url)
    assert head.status_code == 409
    assert alice.delete(url).status_code == 204
    assert alice.head(url).status_code == 404
    assert not list((server.data_dir / "uploads").iterdir())
    # Nothing was harmed on the way.
    assert staged(server, "alice", "results").read_bytes() == b"a file"


def test_open_uploads_and_reserved_bytes_are_limited_per_user(make_server) -> None:
    server = make_server("--max-open-uploads", "2", "--max-reserved", "1000")
    alice = TusTestClient(server.files_url, TOKENS["alice"])
    bob = TusTestClient(server.files_url, TOKENS["bob"])
    first = alice.create_url(400, "a.bin")
    alice.create_url(400, "b.bin")
    refused = alice.create(10, "c.bin")
    assert refused.status_code == 429 and "unfinished uploads" in refused.text
    assert refused.headers["Retry-After"]
    assert bob.create(900, "bobs.bin").status_code == 201  # limits are per user
    assert alice.patch(first, 0, b"x" * 400).status_code == 204  # staged: frees its place
    too_big = alice.create(601, "d.bin")
    assert_refused(too_big, 507)
    assert alice.create(600, "d.bin").status_code == 201


def test_folders_deeper_than_the_policy_allows_are_refused_and_deep_trees_go(
    server, alice: TusTestClient
) -> None:
    """1000 folders deep: refused with 400 by every route that would create it (Python's
    recursive folder code runs out of stack there), and a tree that deep made by other
    means is deleted through the API."""
    deep = "/".join(["d"] * 1000)
    headers = alice.headers()
    assert requests.post(f"{server.url}/mkdir/{deep}", headers=headers).status_code == 400
    refused = alice.create(1, "f.txt", destPath=deep)
    assert refused.status_code == 400 and "folders deep" in refused.text
    # Made on disk (by a shell, a transfer service): the API can still remove it.
    home = server.data_dir / "staging" / "alice"
    folder = home
    for _ in range(1200):
        folder = folder / "d"
        folder.mkdir(parents=True)  # one level at a time, as a shell would
    (folder / "leaf.txt").write_text("x")
    answer = requests.delete(f"{server.url}/delete/d", headers=headers, timeout=60)
    assert answer.status_code == 200, answer.text
    assert not (home / "d").exists()
