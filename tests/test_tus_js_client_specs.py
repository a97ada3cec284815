"""tus-js-client's own end-to-end specs against this server, with only the endpoint changed.

Its repository's ``test/spec/test-end-to-end*.js`` upload 50 MiB four ways (a Blob, with
creation-with-upload, a Web stream with deferred length, a Node stream in 20 MiB chunks)
to tusd's demo server, then check the content with GET, the metadata with HEAD, and the
termination with GET → 404. They are read from a git repository of tus-js-client
(``TUS_JS_CLIENT_REPO``: a clone or a bare mirror holding the commit below), copied into a
temporary directory with the demo server's URL replaced by this server's, and run by its
own test runner (jasmine) with the release they were written for (tests/js_specs:
tus-js-client 5.0.0-pre2 from npm, whose library differs from that commit's only by a fix
for Deno). The specs send no credentials: the server runs in single-user mode.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from .js_env import npm_install
from .servers import InProcessServer

pytestmark = pytest.mark.in_process

SPECS_DIR = Path(__file__).parent / "js_specs"
REPO_ENV = "TUS_JS_CLIENT_REPO"
COMMIT = "89ef3cad93cf92c89452ae08b7c29c20677faf3c"
SPECS = ("test/spec/test-end-to-end.js", "test/spec/test-end-to-end-node.js")
HELPERS = ("test/spec/helpers/utils.js",)
DEMO_URL = "https://tusd.tusdemo.net/files/"
DEMO_URL_PATTERN = r"/^https:\/\/tusd\.tusdemo\.net\/files\//"


def spec_source(repo: Path, path: str) -> str:
    done = subprocess.run(
        ["git", f"--git-dir={repo}", "show", f"{COMMIT}:{path}"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"{path} at {COMMIT} not in {repo}: {done.stderr}"
    return done.stdout


def git_dir(location: str) -> Path:
    """The git directory of a clone (its .git) or of a bare mirror."""
    path = Path(location)
    return path / ".git" if (path / ".git").exists() else path


@pytest.fixture(scope="module")
def tus_js_client_repo() -> Path:
    location = os.environ.get(REPO_ENV)
    if not location or not Path(location).exists():
        pytest.skip(f"set {REPO_ENV} to a git repository of tus-js-client holding {COMMIT}")
    return git_dir(location)


def with_endpoint(source: str, files_url: str) -> str:
    """The spec with the demo server's endpoint (and the pattern its URLs are checked
    against) replaced by ``files_url``: the only change made."""
    assert DEMO_URL in source and DEMO_URL_PATTERN in source
    pattern = "/^" + re.escape(files_url).replace("/", r"\/") + "/"
    return source.replace(DEMO_URL, files_url).replace(DEMO_URL_PATTERN, pattern)


def test_tus_js_client_end_to_end_specs(
    tus_js_client_repo: Path, make_server, tmp_path: Path
) -> None:
    node_modules = npm_install(SPECS_DIR)
    server: InProcessServer = make_server(single_user=True)
    run = tmp_path / "specs"
    (run / "test" / "spec" / "helpers").mkdir(parents=True)
    (run / "package.json").write_text(json.dumps({"type": "module"}))  # the specs are ESM
    (run / "node_modules").symlink_to(node_modules)
    expected_specs = 0
    for path in SPECS:
        source = spec_source(tus_js_client_repo, path)
        expected_specs += len(re.findall(r"^\s+it\(", source, re.MULTILINE))
        (run / path).write_text(with_endpoint(source, server.files_url))
    for path in HELPERS:
        (run / path).write_text(spec_source(tus_js_client_repo, path))
    jasmine = node_modules / "jasmine" / "bin" / "jasmine.js"
    done = subprocess.run(
        [shutil.which("node") or "node", str(jasmine), *SPECS],
        cwd=run, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    report = f"{done.stdout}\n{done.stderr}\nserver:\n{server.log()}"
    assert done.returncode == 0, report
    assert expected_specs == 4, "the specs changed upstream: look at them again"
    assert f"{expected_specs} specs, 0 failures" in done.stdout, report
