"""The JavaScript clients people use, against the real server.

- tus-js-client from Node: a 32 MiB file with ``parallelUploads: 4`` (the concatenation
  extension), a chunked upload, and uploads aborted midway and resumed from a
  ``FileUrlStorage`` by a new process.
- Uppy (``@uppy/core`` + ``@uppy/tus``) in Debian's headless Chromium driven by
  ``playwright-core``: two files and a folder from a page on another origin (allowed with
  ``--cors-origins``), so every tus request goes through the server's CORS answers.

The npm packages (pinned in tests/js/package-lock.json) are installed by the tests
themselves with ``npm ci``; the tests skip only when node/npm (or Chromium, for the
browser test) are absent.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import requests

from .conftest import md5_of
from .fault_proxy import FaultProxy, throttle
from .js_env import JS_DIR, MiB, random_file, require_chromium
from .servers import TOKENS, ServerProcess, free_port

USER = "alice"
TOKEN = TOKENS[USER]


# --- npm packages, the page bundle, a static HTTP server -------------------------------------


@pytest.fixture(scope="session")
def uppy_site(node_modules: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding the test page and its esbuild bundle of @uppy/core + @uppy/tus."""
    site = tmp_path_factory.mktemp("uppy-site")
    shutil.copy(JS_DIR / "uppy_page.html", site / "uppy_page.html")
    done = subprocess.run(
        [
            str(node_modules / ".bin" / "esbuild"), str(JS_DIR / "uppy_page.js"),
            "--bundle", "--format=esm", "--target=es2022", "--log-level=warning",
            f"--outfile={site / 'uppy_page.bundle.js'}",
        ],
        cwd=JS_DIR, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"esbuild failed:\n{done.stdout}\n{done.stderr}"
    return site


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def static_http_server(directory: Path) -> Iterator[str]:
    """Serve ``directory`` on 127.0.0.1 on a port of its own; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)


# --- helpers ---------------------------------------------------------------------------------


def run_node(script: str, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["node", str(JS_DIR / script), *args],
        cwd=JS_DIR, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def json_report(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    lines = done.stdout.strip().splitlines()
    assert lines, f"no report on stdout (exit {done.returncode}):\n{done.stderr}"
    return json.loads(lines[-1])


def node_upload(
    server: ServerProcess,
    source: Path,
    *,
    parallel: int,
    chunk_size: int,
    dest_path: str | None = None,
    options: tuple[str, ...] = (),
    files_url: str | None = None,
) -> dict[str, Any]:
    endpoint = files_url or server.files_url
    args = [endpoint, TOKEN, str(source), str(parallel), str(chunk_size), *options]
    if dest_path is not None:
        args += ["--dest-path", dest_path]
    done = run_node("tus_node_upload.mjs", *args)
    assert done.returncode == 0, (
        f"tus-js-client failed (exit {done.returncode}):\n{done.stderr}\nserver:\n{server.log()}"
    )
    return json_report(done)


def assert_staged(server: ServerProcess, relative: str, source: Path) -> None:
    """The file is in the user's staging area with the source's md5, and so says its sidecar."""
    expected = md5_of(source)
    staged = server.data_dir / "staging" / USER / relative
    assert staged.is_file(), f"{staged} was not staged; server log:\n{server.log()}"
    assert staged.stat().st_size == source.stat().st_size
    assert md5_of(staged) == expected
    sidecar = json.loads((server.data_dir / "metadata" / USER / relative).read_text())
    assert sidecar["md5"] == expected
    assert sidecar["size"] == source.stat().st_size


def head(url: str) -> requests.Response:
    response = requests.head(
        url, headers={"Tus-Resumable": "1.0.0", "Authorization": f"Bearer {TOKEN}"}, timeout=30
    )
    assert response.status_code == 200, response.text
    return response


# --- tus-js-client from Node -----------------------------------------------------------------


def test_tus_js_client_parallel_uploads_concatenate(
    node_modules: Path, server: ServerProcess, tmp_path: Path
) -> None:
    source = random_file(tmp_path / "src" / "parallel.bin", 32 * MiB)
    report = node_upload(server, source, parallel=4, chunk_size=0, dest_path="node/parallel")

    assert_staged(server, "node/parallel/parallel.bin", source)
    # The URL tus-js-client ended with is a final upload concatenating its four partials.
    assert report["url"].startswith(server.files_url)
    final = head(report["url"])
    concat = final.headers["Upload-Concat"]
    assert concat.startswith("final;")
    assert len(concat.removeprefix("final;").split()) == 4
    assert final.headers["Upload-Offset"] == final.headers["Upload-Length"] == str(32 * MiB)


def test_tus_js_client_chunked_upload(
    node_modules: Path, server: ServerProcess, tmp_path: Path
) -> None:
    source = random_file(tmp_path / "src" / "chunked.bin", 32 * MiB)
    report = node_upload(server, source, parallel=1, chunk_size=5 * MiB, dest_path="node/chunked")

    assert_staged(server, "node/chunked/chunked.bin", source)
    assert "Upload-Concat" not in head(report["url"]).headers


@pytest.mark.parametrize(
    "chunk_size",
    [5 * MiB, 0],
    ids=["5MiB-chunks", "one-patch"],  # one-patch: the abort cuts the only PATCH mid-body
)
def test_tus_js_client_resumes_an_aborted_upload(
    node_modules: Path, server: ServerProcess, tmp_path: Path, chunk_size: int
) -> None:
    source = random_file(tmp_path / "src" / "resumed.bin", 32 * MiB)
    url_storage = tmp_path / "tus-url-storage.json"
    storage = ("--url-storage", str(url_storage))

    # Throttled: unthrottled, the rest of a one-PATCH body can reach the server between the
    # progress event that triggers the abort and the abort itself (seen on a fast machine).
    with FaultProxy(server.url, default=throttle(20 * MiB)) as proxy:
        files_url = server.files_url.replace(server.url, proxy.url)
        first = node_upload(
            server, source, parallel=1, chunk_size=chunk_size, dest_path="node/resumed",
            options=(*storage, "--abort-after", "0.3"), files_url=files_url,
        )  # fmt: skip
        assert first["aborted"], first
        assert first["url"].startswith(files_url)
        kept = int(head(first["url"]).headers["Upload-Offset"])
        assert 0 < kept < 32 * MiB, f"the server kept {kept} bytes of the aborted upload"
        assert not (server.data_dir / "staging" / USER / "node/resumed/resumed.bin").exists()

        second = node_upload(
            server, source, parallel=1, chunk_size=chunk_size, dest_path="node/resumed",
            options=(*storage, "--resume"), files_url=files_url,
        )  # fmt: skip
    assert second["previousUploads"] == 1
    assert second["resumedFrom"] == first["url"]
    assert second["url"] == first["url"]
    # Resumed, not restarted: the first progress report already counts the kept bytes.
    assert second["firstProgress"] > 0
    assert second["firstProgress"] >= kept
    assert_staged(server, "node/resumed/resumed.bin", source)


# --- Uppy in headless Chromium ---------------------------------------------------------------


# Lines of the server's request log (tus_staging/request_log.py).
_UPLOAD_PREFLIGHT = re.compile(r"method=OPTIONS path=/files/[0-9a-f]{32} status=204")
_CREATION_PREFLIGHT = re.compile(r"method=OPTIONS path=/files/ status=204")


@pytest.mark.parametrize(
    "parallel_uploads",
    [1, 3],
    ids=["one-upload-per-file", "parallelUploads-3"],  # 3: Uppy's concatenation, in a browser
)
def test_uppy_in_headless_chromium_uploads_files_and_a_folder_cross_origin(
    node_modules: Path,
    uppy_site: Path,
    make_server,
    tmp_path: Path,
    parallel_uploads: int,
) -> None:
    require_chromium()
    src = tmp_path / "src"
    files = [random_file(src / "one.bin", 3 * MiB), random_file(src / "two.dat", 2 * MiB + 17)]
    folder = src / "folder"
    in_folder = {
        "folder/top.bin": random_file(folder / "top.bin", 2 * MiB + 5),
        "folder/sub/deep.bin": random_file(folder / "sub" / "deep.bin", 3 * MiB + 1),
        "folder/sub/other.txt": random_file(folder / "sub" / "other.txt", 1 * MiB),
    }
    with static_http_server(uppy_site) as site:
        server = make_server("--cors-origins", site)  # the page's origin, and only it
        assert site != server.url  # another port: another origin, so CORS applies
        log_start = server.log_path.stat().st_size
        page = f"{site}/uppy_page.html?" + urlencode(
            {"endpoint": server.files_url, "token": TOKEN, "parallelUploads": parallel_uploads}
        )
        done = run_node(
            "uppy_browser.mjs", page, "--files", *map(str, files), "--folder", str(folder),
            "--timeout-ms", "60000",
        )  # fmt: skip
    assert done.returncode == 0, (
        f"Uppy run failed (exit {done.returncode}):\n{done.stdout}\n{done.stderr}\n"
        f"server log:\n{server.log()}"
    )
    report = json_report(done)
    assert report["pageErrors"] == [], report

    expected = {"one.bin": files[0], "two.dat": files[1], **in_folder}
    added = {file["relativePath"] or file["name"] for file in report["added"]}
    assert added == set(expected), report["added"]
    successful = report["result"]["successful"]
    assert report["result"]["failed"] == []
    assert sorted(file["relativePath"] or file["name"] for file in successful) == sorted(expected)
    assert all(file["uploadURL"].startswith(server.files_url) for file in successful), successful
    for relative, source in expected.items():
        assert_staged(server, relative, source)
    for file in successful:
        concat = head(file["uploadURL"]).headers.get("Upload-Concat", "")
        if parallel_uploads > 1:  # each file went up in parts joined by a final upload
            assert concat.startswith("final;"), file
            assert len(concat.removeprefix("final;").split()) == parallel_uploads
        else:
            assert concat == "", file

    # The browser asked before its cross-origin POSTs and PATCHes (Authorization and the
    # tus headers are not CORS-safelisted). Preflights to an upload URL come only from it.
    with open(server.log_path, "rb") as handle:
        handle.seek(log_start)
        log = handle.read().decode(errors="replace")
    assert _CREATION_PREFLIGHT.search(log), log
    assert _UPLOAD_PREFLIGHT.search(log), log
