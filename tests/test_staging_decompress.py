"""PATCH /decompress against the real server: answers, and what the other routes see after.
(Every format and every unsafe archive: tests/test_archive.py.)"""

from __future__ import annotations

import gzip
import hashlib
import io
import zipfile

import requests

from .servers import TOKENS, ServerProcess
from .tus_client import TusTestClient

HEADERS = {"Authorization": TOKENS["alice"]}


def patch(server: ServerProcess, path: str) -> requests.Response:
    return requests.patch(f"{server.url}/decompress/{path}", headers=HEADERS, timeout=60)


def test_decompress_through_the_server(server: ServerProcess) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zipped:
        zipped.writestr("reads/r1.fq", b"@r1\nACGT\n+\nIIII\n")
        zipped.writestr("notes.txt", b"notes\n")
    tus = TusTestClient(server.files_url, TOKENS["alice"])
    tus.upload(buffer.getvalue(), "batch.zip", destPath="runs")
    answer = patch(server, "runs/batch.zip")
    assert answer.status_code == 200, answer.text
    assert answer.text == "succesfully decompressed alice/runs/batch.zip"
    listing = requests.get(f"{server.url}/list/runs", headers=HEADERS, timeout=60).json()
    assert [e["path"].removeprefix("alice/runs/") for e in listing] == [
        "reads", "reads/r1.fq", "batch.zip", "notes.txt",
    ]  # fmt: skip
    record = requests.get(f"{server.url}/metadata/runs/reads/r1.fq", headers=HEADERS).json()
    assert record["md5"] == hashlib.md5(b"@r1\nACGT\n+\nIIII\n").hexdigest()
    assert record["lineCount"] == "4" and record["path"] == "alice/runs/reads/r1.fq"
    assert "computing metadata" not in server.log()  # written while extracting
    # Again: what it holds is there already.
    assert patch(server, "runs/batch.zip").status_code == 409
    # A single .gz replaces itself, as gzip -d does.
    tus.upload(gzip.compress(b"x\n" * 10), "one.txt.gz")
    assert patch(server, "one.txt.gz").status_code == 200
    home = server.data_dir / "staging" / "alice"
    assert (home / "one.txt").read_bytes() == b"x\n" * 10
    assert not (home / "one.txt.gz").exists()


def test_decompress_refusals(make_server) -> None:
    server = make_server("--decompress-max-bytes", "1M", "--decompress-max-members", "10")
    home = server.data_dir / "staging" / "alice"
    home.mkdir(parents=True)
    (home / "notes.rar").write_bytes(b"rar")
    (home / "folder.zip").mkdir()
    (home / "bomb.gz").write_bytes(gzip.compress(bytes(8 * 1024 * 1024)))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zipped:
        for i in range(11):
            zipped.writestr(f"f{i}", b"")
    (home / "many.zip").write_bytes(buffer.getvalue())
    (home / "junk.tar.gz").write_bytes(b"no gzip here")
    expected = {
        "notes.rar": (400, "cannot decompress a .rar file"),
        "folder.zip": (400, "alice/folder.zip is a directory not a file"),
        "missing.zip": (404, "path alice/missing.zip does not exist"),
        "bomb.gz": (413, "bomb.gz expands to more than 1048576 bytes"),
        "many.zip": (413, "many.zip has more than 10 members"),
    }
    for name, (status, reason) in expected.items():
        answer = patch(server, name)
        assert (answer.status_code, answer.text.strip()) == (status, reason)
    answer = patch(server, "junk.tar.gz")
    assert answer.status_code == 400 and answer.text.startswith("junk.tar.gz is not a tar.gz")
    assert sorted(p.name for p in home.iterdir()) == [
        "bomb.gz", "folder.zip", "junk.tar.gz", "many.zip", "notes.rar",
    ]  # fmt: skip
