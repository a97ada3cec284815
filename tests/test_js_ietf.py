"""tus-js-client speaking the IETF draft (``protocol: 'ietf-draft-05'``, interop 6) from
Node, against the real server: an upload aborted midway is resumed by a new ``Upload``
from the URL it stored, and a creation that carries the content completes at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from .fault_proxy import FaultProxy, throttle
from .ietf_client import IetfClient
from .js_env import MiB, random_file
from .servers import TOKENS, InProcessServer
from .test_js_clients import assert_staged, node_upload

pytestmark = pytest.mark.in_process


# A Buffer: tus-js-client 4.3.1 never says Upload-Complete: ?1 on the last of several
# appends of a file read from its path (its FileSource takes a chunk for the end only
# when the chunk is the whole file; 5.0 fixes it). tusd completes an upload when its
# offset reaches its length, which hides this; the draft, and this server, do not.
IETF = ("--protocol", "ietf-draft-05", "--buffer")


@pytest.mark.parametrize(
    "chunk_size",
    [5 * MiB, 0],
    ids=["5MiB-chunks", "one-patch"],  # one-patch: the abort cuts the only append (?1)
)
def test_an_aborted_upload_is_resumed_from_the_stored_url(
    node_modules: Path, server: InProcessServer, tmp_path: Path, chunk_size: int
) -> None:
    source = random_file(tmp_path / "src" / "drafted.bin", 32 * MiB)
    storage = ("--url-storage", str(tmp_path / "tus-url-storage.json"))
    # Throttled, so that the abort lands mid-upload.
    with FaultProxy(server.url, default=throttle(20 * MiB)) as proxy:
        files_url = server.files_url.replace(server.url, proxy.url)
        first = node_upload(
            server, source, parallel=1, chunk_size=chunk_size, dest_path="ietf/resumed",
            options=(*IETF, *storage, "--abort-after", "0.3"), files_url=files_url,
        )  # fmt: skip
        assert first["aborted"], first
        assert first["url"].startswith(files_url)
        path = first["url"].removeprefix(proxy.url)
        state = IetfClient(server, TOKENS["alice"], 6).head(path)
        kept = int(state.headers["upload-offset"])
        assert 0 < kept < 32 * MiB, f"the server kept {kept} bytes of the aborted upload"
        assert state.headers["upload-complete"] == "?0"
        assert not (server.data_dir / "staging" / "alice" / "ietf/resumed/drafted.bin").exists()

        second = node_upload(
            server, source, parallel=1, chunk_size=chunk_size, dest_path="ietf/resumed",
            options=(*IETF, *storage, "--resume"), files_url=files_url,
        )  # fmt: skip
    assert second["previousUploads"] == 1
    assert second["resumedFrom"] == second["url"] == first["url"]
    assert second["firstProgress"] >= kept > 0  # resumed, not restarted
    assert_staged(server, "ietf/resumed/drafted.bin", source)
    finished = IetfClient(server, TOKENS["alice"], 6).head(path)
    assert finished.headers["upload-complete"] == "?1"


def test_a_creation_with_the_content(
    node_modules: Path, server: InProcessServer, tmp_path: Path
) -> None:
    source = random_file(tmp_path / "src" / "at-once.bin", 3 * MiB + 11)
    report = node_upload(
        server, source, parallel=1, chunk_size=0, dest_path="ietf",
        options=(*IETF, "--upload-data-during-creation"),
    )  # fmt: skip
    assert report["url"].startswith(server.files_url)
    assert_staged(server, "ietf/at-once.bin", source)
