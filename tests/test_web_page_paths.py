"""The page's path helpers (web/src/paths.js) against the server's own rules.

Where an upload lands is decided by the server from the metadata the page sends: the
destPath the page builds from the folder being viewed and Uppy's relativePath of a
dropped or chosen folder must put every file where the user sees it go. Runs the page's
JavaScript module in one Node process for all examples.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from yarl import URL

from protocol.destination import upload_destination
from protocol.errors import BadRequest
from protocol.paths import area_path, check_name

from .js_env import JS_DIR


class PagePaths:
    def __init__(self) -> None:
        self.process = subprocess.Popen(
            ["node", str(JS_DIR / "page_paths.mjs")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip

    def __getattr__(self, fn: str) -> Any:
        if fn.startswith("_"):  # repr and friends, not functions of the module
            raise AttributeError(fn)

        def call(*args: Any) -> Any:
            assert self.process.stdin is not None and self.process.stdout is not None
            self.process.stdin.write(json.dumps({"fn": fn, "args": args}) + "\n")
            self.process.stdin.flush()
            answer = json.loads(self.process.stdout.readline())
            assert "error" not in answer, answer
            return answer["result"]

        return call

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(10)


@pytest.fixture(scope="module")
def js() -> Iterator[PagePaths]:
    if shutil.which("node") is None:
        pytest.skip("node is needed to run the page's JavaScript (apt install nodejs)")
    paths = PagePaths()
    yield paths
    paths.close()


def _is_name(text: str) -> bool:
    try:
        check_name(text)
    except BadRequest:
        return False
    return True


# Names the server accepts, with the characters that need care in URLs and hashes.
names = st.text(
    alphabet=st.sampled_from("ab Z09._-~%#?&+=@:;,'\"()[]{}é日本\u00a0"), min_size=1, max_size=12
).filter(_is_name)
folders = st.lists(names, max_size=4)
# Each example waits on the Node process, whose answer time depends on the machine's load.
NODE_ROUND_TRIPS = settings(deadline=None)


@NODE_ROUND_TRIPS
@given(folder=folders, dropped=folders, name=names, how=st.sampled_from(["drop", "input", None]))
@example(folder=[], dropped=[], name="Z:", how="drop")  # a lone top-level drive name
@example(folder=["Z:"], dropped=[], name="a", how=None)
def test_files_land_in_the_viewed_folder_below_what_was_dropped(
    js: PagePaths, folder: list[str], dropped: list[str], name: str, how: str | None
) -> None:
    # Uppy's relativePath: the entry's full path from a drop ("/top/sub/x"), the
    # webkitRelativePath from a folder input ("top/sub/x"), nothing for a lone file.
    inside = "/".join([*dropped, name])
    relative_path = {"drop": f"/{inside}", "input": inside, None: None}[how]
    dest_path = js.destinationFolder("/".join(folder), relative_path)
    expected = PurePosixPath(*folder, *(dropped if how else []), name)

    metadata = {"filename": name.encode(), "destPath": dest_path.encode()}
    if relative_path is not None:  # Uppy may send it too: destPath still decides
        metadata["relativePath"] = relative_path.encode()
    assert _verdict(upload_destination, metadata) == _verdict(area_path, expected.as_posix())
    if relative_path is not None:
        del metadata["relativePath"]
        assert _verdict(upload_destination, metadata) == _verdict(area_path, expected.as_posix())


def _verdict(decide: Any, argument: Any) -> PurePosixPath | None:
    """The accepted path, or None if refused (a top-level "Z:" reads as a Windows drive)."""
    try:
        return decide(argument)
    except BadRequest:
        return None


@NODE_ROUND_TRIPS
@given(folder=folders)
def test_folders_survive_the_location_hash_and_urls(js: PagePaths, folder: list[str]) -> None:
    text = "/".join(folder)
    assert js.folderFromHash(js.hashForFolder(text)) == text
    # What the server's router sees of /list/<urlPath>.
    assert URL(f"http://h/list/{js.urlPath(text)}").path == f"/list/{text}"
    crumbs = js.breadcrumbs(text)
    assert [crumb["folder"] for crumb in crumbs][-1] == text
    assert [crumb["name"] for crumb in crumbs][1:] == folder


@NODE_ROUND_TRIPS
@given(
    folder=folders,
    tree=st.lists(st.tuples(st.lists(names, max_size=3), names, st.booleans()), max_size=8),
)
def test_a_recursive_listing_shows_only_the_folders_children(
    js: PagePaths, folder: list[str], tree: list[tuple[list[str], str, bool]]
) -> None:
    # Entries as a recursive /list answers them: "<user>/<path from the home>".
    entries = [
        {"name": name, "path": "/".join(["alice", *where, name]), "isFolder": is_folder}
        for where, name, is_folder in tree
    ]
    children = js.directChildren(entries, "/".join(folder))
    expected = [e for e in entries if e["path"] == "/".join(["alice", *folder, e["name"]])]
    assert sorted(map(json.dumps, children)) == sorted(map(json.dumps, expected))
    kinds = [entry["isFolder"] for entry in children]
    assert kinds == sorted(kinds, reverse=True), "folders come first"
