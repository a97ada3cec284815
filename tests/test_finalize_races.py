"""An upload finalizing while the user moves or deletes its folder: no 5xx on either side,
and no sidecar left without its file (an orphan would later block an upload into a
folder of that name)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
import requests

from .servers import TOKENS
from .tus_client import TusTestClient

pytestmark = pytest.mark.in_process

HEADERS = {"Authorization": TOKENS["alice"]}
DATA = os.urandom(300_000)


def race(server, alice: TusTestClient, index: int, change) -> tuple[int, int]:
    """The last PATCH of an upload into ``r<index>/sub`` and ``change`` at the same time."""
    url = alice.create_url(len(DATA), "f.bin", destPath=f"r{index}/sub")
    assert alice.patch(url, 0, DATA[:1000]).status_code == 204
    start = threading.Barrier(2)
    answers: dict[str, int] = {}

    def last_patch() -> None:
        start.wait()
        answers["patch"] = alice.patch(url, 1000, DATA[1000:]).status_code

    def user_change() -> None:
        start.wait()
        answers["change"] = change(index).status_code

    threads = [threading.Thread(target=last_patch), threading.Thread(target=user_change)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers["patch"], answers["change"]


def orphan_sidecars(server) -> list[Path]:
    staging = server.data_dir / "staging" / "alice"
    metadata = server.data_dir / "metadata" / "alice"
    return [
        sidecar
        for sidecar in metadata.rglob("*")
        if sidecar.is_file() and not (staging / sidecar.relative_to(metadata)).is_file()
    ]


@pytest.mark.parametrize("verb", ["mv", "delete"])
def test_finalize_racing_the_users_changes(server, alice: TusTestClient, verb: str) -> None:
    def move(index: int) -> requests.Response:
        return requests.patch(
            f"{server.url}/mv/r{index}", headers=HEADERS, data={"newPath": f"m{index}"},
            timeout=60,
        )  # fmt: skip

    def delete(index: int) -> requests.Response:
        return requests.delete(f"{server.url}/delete/r{index}", headers=HEADERS, timeout=60)

    change = move if verb == "mv" else delete
    outcomes = [race(server, alice, index, change) for index in range(15)]
    for patch_status, change_status in outcomes:
        assert patch_status == 204, outcomes
        assert change_status in (200, 404, 409), outcomes
    assert orphan_sidecars(server) == []
    # The file landed somewhere sane each time (or was deleted with its folder).
    staging = server.data_dir / "staging" / "alice"
    for found in staging.rglob("f.bin"):
        assert found.read_bytes() == DATA
    # A later upload into a folder of the same name is not blocked by anything left over.
    alice.upload(b"after", "f.bin", destPath="r0/sub")
    assert (staging / "r0" / "sub" / "f.bin").read_bytes() == b"after"
