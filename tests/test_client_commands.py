"""``tus-staging ls | info | get | mv | rm | mkdir`` against the real server, and their exit
status; ``get`` also killed and resumed, and against a server that lies."""

from __future__ import annotations

import hashlib
import json
import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from tus_staging.cli import main

from .cli_runs import DownloadProxy, run_cli, start_cli
from .scripted_server import ScriptedServer
from .servers import TOKENS, ServerProcess, wait_until

MiB = 1024 * 1024

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def cli(server: ServerProcess, tmp_path: Path, monkeypatch, capsys) -> Run:
    """Run a client command in this process, as alice: (exit status, stdout, stderr)."""
    for name in [n for n in os.environ if n.startswith("TUS_STAGING_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("TUS_STAGING_URL", server.url)
    monkeypatch.setenv("TUS_STAGING_TOKEN", TOKENS["alice"])

    def run(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


def home(server: ServerProcess) -> Path:
    path = server.data_dir / "staging" / "alice"
    path.mkdir(parents=True, exist_ok=True)
    return path


def make_tree(server: ServerProcess) -> Path:
    root = home(server)
    (root / "run7" / "raw").mkdir(parents=True)
    (root / "run7" / "notes.txt").write_text("first\nsecond\nthird\n")
    (root / "run7" / "raw" / "reads.bin").write_bytes(os.urandom(5000))
    (root / "run7" / ".hidden").write_text("x")
    return root


def names(listing: str) -> list[str]:
    return [line.split()[-1] for line in listing.splitlines()]


def test_ls_shows_one_level_folders_first(server: ServerProcess, cli: Run) -> None:
    make_tree(server)
    assert cli("ls") == (0, cli("ls", "/")[1], "")
    code, out, _ = cli("ls")
    assert (code, names(out)) == (0, ["run7/"])
    code, out, _ = cli("ls", "run7")
    assert (code, names(out)) == (0, ["raw/", "notes.txt"])
    assert out.splitlines()[1].split()[:2] == ["19", "B"]
    assert names(cli("ls", "run7/", "-a")[1]) == ["raw/", ".hidden", "notes.txt"]
    code, out, _ = cli("ls", "run7", "--json")
    records = json.loads(out)
    assert [(r["name"], r["isFolder"], r["path"]) for r in records] == [
        ("raw", True, "alice/run7/raw"), ("notes.txt", False, "alice/run7/notes.txt")
    ]  # fmt: skip
    code, out, _ = cli("ls", "run7/notes.txt")  # a file: its own line, as ls does
    assert (code, names(out)) == (0, ["notes.txt"])
    assert cli("ls", "run7/nothing") == (
        2, "", "tus-staging ls: 404: path alice/run7/nothing does not exist\n"
    )  # fmt: skip


def test_ls_asks_for_one_level_and_keeps_only_direct_children(tmp_path: Path) -> None:
    # The server's /list is recursive (as KBase's is): depth=1 asks for one level, and a
    # server that answers with the whole tree anyway is trimmed.
    tree = [
        {"name": "run7", "path": "alice/run7", "mtime": 0, "size": 4096, "isFolder": True},
        {"name": "raw", "path": "alice/run7/raw", "mtime": 0, "size": 4096, "isFolder": True},
        {"name": "r.bin", "path": "alice/run7/raw/r.bin", "mtime": 0, "size": 9, "isFolder": False},
        {"name": "n.txt", "path": "alice/run7/n.txt", "mtime": 0, "size": 3, "isFolder": False},
        {"name": "top", "path": "alice/top", "mtime": 0, "size": 1, "isFolder": False},
    ]
    body = json.dumps(tree).encode()
    answer = (200, {"Content-Type": "application/json"}, body)
    with ScriptedServer({"/list/": answer, "/list/run7": answer}) as scripted:
        top = run_cli(tmp_path, "ls", "--json", "--url", scripted.url)
        inner = run_cli(tmp_path, "ls", "run7", "--json", "--url", scripted.url)
    assert [e["name"] for e in json.loads(top.stdout)] == ["run7", "top"]
    assert [e["name"] for e in json.loads(inner.stdout)] == ["raw", "n.txt"]
    assert scripted.requests == [("GET", "/list/?depth=1"), ("GET", "/list/run7?depth=1")]


def test_info_prints_the_metadata_record(server: ServerProcess, cli: Run) -> None:
    root = make_tree(server)
    code, out, _ = cli("info", "run7/notes.txt", "--json")
    record = json.loads(out)
    answer = requests.get(
        f"{server.url}/metadata/run7/notes.txt", headers={"Authorization": TOKENS["alice"]}
    )
    assert (code, record) == (0, answer.json())
    md5 = hashlib.md5((root / "run7" / "notes.txt").read_bytes()).hexdigest()
    code, out, _ = cli("info", "run7/notes.txt")
    fields = {
        line.split(":")[0]: line.split(":", 1)[1].strip()
        for line in out.splitlines()
        if not line.startswith(" ")  # not a line of head or tail
    }
    assert code == 0
    assert fields["md5"] == md5
    assert fields["size"] == "19 (19 B)"
    assert fields["isText"] == "true"
    assert "    second" in out.splitlines()  # head, as indented lines
    assert cli("info", "run7/raw")[0] == 0
    assert cli("info", "nope")[0] == 2


def test_mv_renames_moves_into_folders_and_never_replaces(server: ServerProcess, cli: Run) -> None:
    root = make_tree(server)
    assert cli("mv", "run7/notes.txt", "run7/README.txt") == (
        0, "moved run7/notes.txt -> run7/README.txt\n", ""
    )  # fmt: skip
    assert cli("mv", "run7/README.txt", "run7/raw")[0] == 0  # an existing folder: into it
    assert (root / "run7" / "raw" / "README.txt").read_text().startswith("first")
    assert cli("mkdir", "archive")[0] == 0
    assert cli("mv", "run7/raw/README.txt", "archive/")[1] == (
        "moved run7/raw/README.txt -> archive/README.txt\n"
    )
    (root / "run7" / "other.txt").write_text("other")
    code, _, err = cli("mv", "run7/other.txt", "archive/README.txt")
    assert code == 1 and err.startswith("tus-staging mv: 409: ")
    assert (root / "archive" / "README.txt").read_text().startswith("first")
    assert (root / "run7" / "other.txt").read_text() == "other"
    assert cli("mv", "run7/gone.txt", "x.txt")[0] == 2


def test_rm_needs_r_for_folders_and_refuses_before_deleting(
    server: ServerProcess, cli: Run
) -> None:
    root = make_tree(server)
    assert cli("rm", "run7/raw") == (
        2, "", "tus-staging rm: run7/raw is a folder: use rm -r to delete it\n"
    )  # fmt: skip
    assert (root / "run7" / "raw" / "reads.bin").exists()
    assert cli("rm", "run7/notes.txt") == (0, "deleted run7/notes.txt\n", "")
    assert not (root / "run7" / "notes.txt").exists()
    assert cli("rm", "-r", "run7/raw") == (0, "deleted run7/raw/\n", "")
    assert not (root / "run7" / "raw").exists()
    assert cli("rm", "run7/raw")[0] == 2
    code, _, err = cli("rm", "-r", "/")  # the home itself
    assert code == 1 and "403" in err
    assert (root / "run7").is_dir()


def test_mkdir(server: ServerProcess, cli: Run) -> None:
    root = home(server)
    assert cli("mkdir", "run8/raw") == (0, "created run8/raw/\n", "")
    assert (root / "run8" / "raw").is_dir()
    assert cli("mkdir", "run8/raw") == (0, "exists: run8/raw/\n", "")
    code, out, _ = cli("mkdir", "run8/raw", "--json")
    assert (code, json.loads(out)["path"]) == (0, "alice/run8/raw")
    (root / "afile").write_text("x")
    code, _, err = cli("mkdir", "afile/sub")
    assert code == 1 and err.startswith("tus-staging mkdir: 409: ")


def test_exit_status_of_refusals_and_unreachable_servers(
    server: ServerProcess, cli: Run, monkeypatch
) -> None:
    assert cli("ls", "--url", "ftp://x")[0] == 2
    code, _, err = cli("ls", "--url", "http://127.0.0.1:9")
    assert (code, err) == (1, "tus-staging ls: cannot reach 127.0.0.1:9: Connection refused\n")
    code, _, err = cli("ls", "--token", "wrong")
    assert code == 1 and err.startswith("tus-staging ls: 401: ")
    code, _, err = cli("ls", "run7/../../bob")
    assert (code, err) == (
        2, "tus-staging ls: a path in the staging area cannot contain '..': 'run7/../../bob'\n"
    )  # fmt: skip
    code, _, err = cli("ls", "bad\x00name")  # refused by the server's path policy
    assert code == 2 and err.startswith("tus-staging ls: 400: ")
    code, _, err = cli("ls", "--url", f"{server.url}/files/")  # the upload's endpoint
    assert (code, err) == (2, (
        f"tus-staging ls: --url {server.url}/files/ is the tus endpoint: ls takes the"
        f" server's base URL ({server.url}), and so does upload\n"
    ))  # fmt: skip
    code, _, err = cli("info", "x", "--url", f"{server.url}/nowhere")  # status said once
    assert (code, err) == (2, "tus-staging info: 404: Not Found\n")
    monkeypatch.delenv("TUS_STAGING_URL")
    with pytest.raises(SystemExit) as usage:
        cli("ls")
    assert usage.value.code == 2


def test_names_from_the_server_cannot_drive_the_terminal(server: ServerProcess, cli: Run) -> None:
    (home(server) / "evil\x1b[2J\x07.txt").write_text("x")
    code, out, _ = cli("ls")
    assert code == 0
    assert "\x1b" not in out and "\x07" not in out
    assert "evil\\x1b[2J\\x07.txt" in out


def remote_file(server: ServerProcess, path: str, data: bytes) -> Path:
    local = home(server) / path
    local.parent.mkdir(parents=True, exist_ok=True)
    local.write_bytes(data)
    return local


def test_get_into_a_file_a_folder_or_here(
    server: ServerProcess, cli: Run, tmp_path: Path, monkeypatch
) -> None:
    data = os.urandom(3_000_000)
    remote = remote_file(server, "run7/reads.bin", data)
    remote_file(server, "run7/empty", b"")
    md5 = hashlib.md5(data).hexdigest()
    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    assert cli("get", "run7/reads.bin") == (
        0, "", f"downloaded run7/reads.bin -> reads.bin, md5 {md5} ok\n"
    )  # fmt: skip
    assert (tmp_path / "here" / "reads.bin").read_bytes() == data
    # The server's mtime (to the millisecond its records give).
    assert os.stat("reads.bin").st_mtime_ns // 10**6 == remote.stat().st_mtime_ns // 10**6
    assert cli("get", "run7/reads.bin", str(tmp_path))[0] == 0
    assert (tmp_path / "reads.bin").read_bytes() == data
    assert cli("get", "run7/reads.bin", str(tmp_path / "copy.bin"))[0] == 0
    assert (tmp_path / "copy.bin").read_bytes() == data
    assert cli("get", "run7/empty", str(tmp_path))[0] == 0
    assert (tmp_path / "empty").read_bytes() == b""
    assert not list(tmp_path.rglob("*.part"))
    assert cli("get", "run7", str(tmp_path)) == (2, "", "tus-staging get: run7 is a folder\n")
    code, _, err = cli("get", "run7/nope", str(tmp_path))
    assert (code, err) == (2, "tus-staging get: 404: path alice/run7/nope does not exist\n")
    code, _, err = cli("get", "run7/reads.bin", str(tmp_path / "no" / "such" / "dir" / "x"))
    assert code == 1 and "No such file or directory" in err


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGKILL])
def test_a_stopped_get_continues_with_a_range_request(
    server: ServerProcess, tmp_path: Path, stop: signal.Signals
) -> None:
    size = 8 * MiB
    data = os.urandom(size)
    remote_file(server, "big.bin", data)
    target = tmp_path / "copy.bin"
    partial = tmp_path / "copy.bin.part"
    # One proxy for both runs: another --url is another server, whose partial files are
    # not resumed. Slow for the first run, so that the stop lands mid-file.
    with DownloadProxy(server.url, rate=4_000_000) as proxy:
        args = ("get", "big.bin", str(target), "--url", proxy.url)
        first = start_cli(tmp_path, *args)
        wait_until(lambda: partial.exists() and partial.stat().st_size >= 2 * MiB, 30, "2 MiB")
        first.send_signal(stop)
        _, stderr = first.communicate(timeout=30)
        if stop == signal.SIGINT:
            assert first.returncode == 130
            assert "run the same command again to resume" in stderr
        kept = partial.stat().st_size
        assert 2 * MiB <= kept < size and not target.exists()
        proxy.quiet_down()
        second = run_cli(tmp_path, *args)
    assert second.returncode == 0, second.stderr
    assert f"(resumed at {kept} bytes)" in second.stderr
    # The missing bytes once, plus the heads and the metadata record.
    assert size - kept <= proxy.received < size - kept + 64 * 1024
    assert target.read_bytes() == data and not partial.exists()


def test_a_partial_copy_of_a_file_changed_since_is_not_continued(
    server: ServerProcess, tmp_path: Path
) -> None:
    old, new = os.urandom(4 * MiB), os.urandom(4 * MiB)
    remote = remote_file(server, "data.bin", old)
    partial = tmp_path / "data.bin.part"
    with DownloadProxy(server.url, rate=2_000_000) as proxy:
        args = ("get", "data.bin", str(tmp_path), "--url", proxy.url)
        first = start_cli(tmp_path, *args)
        wait_until(lambda: partial.exists() and partial.stat().st_size >= MiB, 30, "1 MiB")
        first.kill()
        first.communicate(timeout=30)
        remote.write_bytes(new)  # the same size, other bytes, a later mtime
        os.utime(remote, ns=(remote.stat().st_atime_ns, remote.stat().st_mtime_ns + 10**10))
        proxy.quiet_down()
        second = run_cli(tmp_path, *args)
    assert second.returncode == 0, second.stderr
    assert "resumed" not in second.stderr
    assert proxy.received >= len(new)
    assert (tmp_path / "data.bin").read_bytes() == new


def test_get_refuses_what_does_not_match_the_record(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    def record(name: str, size: int, md5: str) -> tuple[int, dict[str, str], bytes]:
        fields = {"name": name, "path": f"u/{name}", "mtime": 0, "size": size,
                  "isFolder": False, "md5": md5}  # fmt: skip
        return 200, {"Content-Type": "application/json"}, json.dumps(fields).encode()

    body = b"0123456789"
    with ScriptedServer({
        "/metadata/wrong-md5": record("wrong-md5", 10, "0" * 32),
        "/download/wrong-md5": (200, {}, body),
        "/metadata/too-long": record("too-long", 4, hashlib.md5(body[:4]).hexdigest()),
        "/download/too-long": (200, {}, body),
        "/metadata/no-size": (200, {}, b'{"name": "no-size", "isFolder": false}'),
    }) as lying:  # fmt: skip
        cli_dir = tmp_path_factory.mktemp("cli")  # its cache: not in tmp_path, kept empty
        results = {
            name: run_cli(cli_dir, "get", name, str(tmp_path / name), "--retry-delay", "0",
                          "--url", lying.url)
            for name in ("wrong-md5", "too-long", "no-size")
        }  # fmt: skip
    assert "expected 10 with md5 " + "0" * 32 in results["wrong-md5"].stderr
    assert "sent more than the 4 bytes announced" in results["too-long"].stderr
    assert "has no size" in results["no-size"].stderr
    assert {name: r.returncode for name, r in results.items()} == dict.fromkeys(results, 1)
    assert list(tmp_path.iterdir()) == []  # no file, no partial file left
