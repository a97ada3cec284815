"""The server's own page (GET /) in Debian's headless Chromium, driven by playwright-core.

One browser session does what a person would: sign in with a token, make a folder, upload
two files and a folder into it, start a big file (parallel parts joined by concatenation),
reload the page mid-upload and add the file again, open a file's details and download it,
rename, delete, and sign out. The link to the server is throttled (tests/fault_proxy.py),
so the reload lands mid-upload; the server's own answers and request log prove the resume.
Screenshots at desktop and phone size are written to the test's tmp dir.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .cli_runs import access_log
from .conftest import md5_of
from .fault_proxy import FaultProxy, throttle
from .js_env import JS_DIR, MiB, random_file, require_chromium
from .servers import TOKENS, ServerProcess, wait_until
from .tus_client import TusTestClient, upload_id_of

USER = "alice"
TOKEN = TOKENS[USER]
# Per connection, client to server: slow enough that the reload lands mid-upload.
LINK_RATE = 8 * MiB
# At least the page's PARALLEL_FROM_BYTES (web/src/uploader.js): sent in 4 parallel parts.
BIG = 64 * MiB + 3
PARTS = 4
TEXT_LINES = 49_152  # of 64 bytes: 3 MiB


def text_file(path: Path, lines: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(b"line %06d " % n + b"x" * 51 + b"\n" for n in range(lines)))
    return path


class Driver:
    """tests/js/page_browser.mjs as a subprocess: its checkpoints, then its report."""

    def __init__(self, command: list[str]):
        self.process = subprocess.Popen(
            command, cwd=JS_DIR, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

    def lines(self) -> Iterator[dict[str, Any]]:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith("{"):
                yield json.loads(line)

    def go(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("go\n")
        self.process.stdin.flush()

    def finish(self) -> tuple[int, str]:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        assert self.process.stderr is not None
        return self.process.returncode, self.process.stderr.read()


def test_page_in_headless_chromium(
    node_modules: Path, server: ServerProcess, tokens_file: Path, tmp_path: Path
) -> None:
    require_chromium()
    src = tmp_path / "src"
    files = [text_file(src / "notes.txt", TEXT_LINES), random_file(src / "two.dat", 1 * MiB)]
    folder = src / "results"
    in_folder = {
        "results/top.bin": random_file(folder / "top.bin", 2 * MiB + 5),
        "results/sub/deep.bin": random_file(folder / "sub" / "deep.bin", 1 * MiB + 1),
    }
    big = random_file(src / "big.bin", BIG)
    refused = random_file(src / " leading-space.txt", 10)  # the server refuses this name
    shots = tmp_path / "screenshots"
    shots.mkdir()
    staging = server.data_dir / "staging" / USER

    with FaultProxy(server.url, default=throttle(LINK_RATE)) as proxy:
        driver = Driver([
            "node", str(JS_DIR / "page_browser.mjs"), f"{proxy.url}/",
            "--token", TOKEN, "--files", *map(str, files), "--folder", str(folder),
            "--big", str(big), "--refused", str(refused), "--out", str(shots),
            "--timeout-ms", "30000",
        ])  # fmt: skip
        report: dict[str, Any] = {}
        try:
            for message in driver.lines():
                if "report" in message:
                    report = message["report"]
                    break
                step = message["checkpoint"]
                if step == "uploaded":
                    # Into the folder being viewed; the folder's own tree below it.
                    for source in files:
                        assert md5_of(staging / "inbox" / source.name) == md5_of(source)
                    for relative, source in in_folder.items():
                        assert md5_of(staging / "inbox" / relative) == md5_of(source)
                elif step == "reloaded":
                    kept = check_interrupted(server, message["stored"])
                    reloaded_at = server.log_path.stat().st_size
                elif step == "resumed":
                    check_resumed(server, reloaded_at, kept, staging / "inbox" / big.name, big)
                elif step == "edited":
                    assert not (staging / "inbox" / "two.dat").exists()
                    assert not (staging / "inbox" / "renamed.dat").exists()
                    assert md5_of(staging / "inbox" / "notes.txt") == md5_of(files[0])
                elif step == "revoke":
                    tokens = tokens_file.read_text()
                    tokens_file.write_text(tokens.replace(f"{TOKEN} {USER}\n", ""))
                elif step == "restore":
                    tokens_file.write_text(tokens)
                driver.go()
        finally:
            returncode, stderr = driver.finish()
    assert returncode == 0 and report.get("failure") is None, (
        f"browser run failed (exit {returncode}):\n{report.get('failure')}\n{stderr}\n"
        f"report: {report}\nserver log:\n{server.log()}"
    )

    assert report["wrongTokenMessage"] == "Sign-in failed: invalid token"
    assert report["signedInAs"] == USER
    assert report["hashInInbox"] == "#/inbox"
    listed = {entry["path"]: entry for entry in report["listedAfterUpload"]}
    assert set(listed) == {"inbox/notes.txt", "inbox/two.dat", "inbox/results"}
    assert listed["inbox/results"]["kind"] == "folder"
    assert listed["inbox/notes.txt"]["size"] == "3.0 MiB"
    assert report["uploadRefusal"] == (
        "Upload of  leading-space.txt failed: "
        "filename must not start with whitespace, got ' leading-space.txt'"
    )
    # The resumed upload was forgotten once done: nothing left to resume by mistake.
    assert report["storedAfterResume"] == []

    assert report["detailsMd5"] == hashlib.md5(files[0].read_bytes()).hexdigest()
    details = report["details"]
    assert details["Lines"] == str(TEXT_LINES)
    assert details["Content"] == "text"
    assert details["Size"] == f"3.0 MiB ({TEXT_LINES * 64} bytes)"
    assert report["detailsHead"].startswith("line 000000 xxxx")
    assert report["detailsTail"].endswith(f"line {TEXT_LINES - 1:06d} " + "x" * 51 + "\n")
    assert report["downloadedMd5"] == report["detailsMd5"]
    assert report["downloadName"] == "notes.txt"
    assert report["renamePrefill"] == "inbox/two.dat"
    # The server's own words, the KBase staging service's spelling included.
    assert "alice/inbox/renamed.dat allready exists" in report["renameRefusal"]
    assert (
        report["deleteQuestion"]
        == "The file inbox/renamed.dat will be deleted. This cannot be undone."
    )
    assert report["phoneOverflow"] <= 0, "the phone-sized page scrolls sideways"
    keyboard = report["keyboard"]
    assert keyboard[0]["text"] == "Refresh"
    assert keyboard[-1]["inListing"], keyboard
    assert keyboard[-1]["outline"] != "none" and keyboard[0]["outline"] != "none", keyboard
    assert report["sessionEndedMessage"] == "Please sign in again: invalid token"
    assert report["tokenAfterSignOut"] is None

    # Nothing from another origin, and nothing the page's policy had to refuse.
    assert report["origins"] == [proxy.url], report["origins"]
    assert report["pageErrors"] == [], report
    assert report["console"] == [], report

    shot_names = ("desktop", "phone", "details-desktop", "uploading-desktop")
    for name in (f"page-{shot}.png" for shot in shot_names):
        assert (shots / name).stat().st_size > 10_000, f"{name} looks empty"


def test_page_in_single_user_mode(node_modules: Path, make_server, tmp_path: Path) -> None:
    """No sign-in; the page's own unsafe requests (same origin) go through; home uploads."""
    require_chromium()
    server = make_server(single_user=True)
    files = [
        random_file(tmp_path / "src" / "a.bin", 300_000),
        text_file(tmp_path / "src" / "b.txt", 10),
    ]
    done = subprocess.run(
        ["node", str(JS_DIR / "page_browser.mjs"), f"{server.url}/", "--single-user",
         "--files", *map(str, files), "--timeout-ms", "30000"],
        cwd=JS_DIR, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    report = lines[-1]["report"] if lines else {}
    assert done.returncode == 0, f"{report}\n{done.stderr}\n{server.log()}"
    assert report["account"] == "Signed in as local (single-user mode)"
    assert report["signOutShown"] is False
    home = server.data_dir / "staging" / "local"
    for source in files:
        assert md5_of(home / source.name) == md5_of(source)
    assert report["listed"] == ["a.bin", "b.txt"]
    assert not (home / "made here").exists()
    assert report["pageErrors"] == [] and report["console"] == [], report


def check_interrupted(server: ServerProcess, stored: list[dict[str, Any]]) -> list[int]:
    """After the reload: the big file's parts hold the bytes the server got before it.

    Returns each part's kept offset, as the server answers it."""
    assert len(stored) == 1, stored
    part_urls = stored[0]["parallelUploadUrls"]
    assert len(part_urls) == PARTS
    ids = {upload_id_of(url) for url in part_urls}

    # The reload cut each part's PATCH: wait until the server has logged (so committed) all.
    def cut_patches_logged() -> bool:
        logged = {line.get("upload_id") for line in access_log(server) if line["method"] == "PATCH"}
        return ids <= logged

    wait_until(cut_patches_logged, 30, "the server's end of the cut PATCHes")
    client = TusTestClient(server.files_url, TOKEN)
    kept = [client.offset(url) for url in part_urls]
    assert sum(kept) > 0, f"nothing was kept of the interrupted parts: {kept}"
    assert sum(kept) < BIG, "the parts were complete before the reload"
    return kept


def check_resumed(
    server: ServerProcess, reloaded_at: int, kept: list[int], staged: Path, source: Path
) -> None:
    """The second attempt sent each part only from where the server had it."""
    assert md5_of(staged) == md5_of(source)
    after = access_log(server, reloaded_at)
    sent = sum(int(line.get("bytes", 0)) for line in after if line["method"] == "PATCH")
    assert sent == BIG - sum(kept), (sent, kept)
    # No new part was created: one POST after the reload, the final upload.
    posts = [line for line in after if line["method"] == "POST"]
    assert len(posts) == 1, posts
    sidecar = json.loads((server.data_dir / "metadata" / USER / "inbox" / source.name).read_text())
    assert sidecar["md5"] == md5_of(source)
