"""The staging API routes: every success and error path, against the real server, in the
KBase staging service's request and answer shapes."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from importlib import metadata as package_metadata
from pathlib import Path

import pytest
import requests

from .raw_http import raw_status
from .servers import TOKENS, ServerProcess
from .tus_client import TusTestClient


class Api:
    def __init__(self, server: ServerProcess, user: str | None):
        self.url = server.url
        self.user = user
        self.home = server.data_dir / "staging" / (user or "")
        self.meta = server.data_dir / "metadata" / (user or "")
        self.headers = {"Authorization": TOKENS[user]} if user else {}

    def get(self, route: str, **kwargs) -> requests.Response:
        return self.call("GET", route, **kwargs)

    def call(self, method: str, route: str, **kwargs) -> requests.Response:
        headers = {**self.headers, **(kwargs.pop("headers", None) or {})}
        return requests.request(method, f"{self.url}{route}", headers=headers, timeout=60, **kwargs)

    def put_file(self, relative: str, data: bytes, mtime: float | None = None) -> Path:
        path = self.home / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        if mtime is not None:
            os.utime(path, (mtime, mtime))
        return path

    def ms(self, relative: str) -> int:
        return int(os.stat(self.home / relative).st_mtime * 1000)


@pytest.fixture
def api(server: ServerProcess) -> Api:
    return Api(server, "alice")


def one_line_error(response: requests.Response, status: int) -> str:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.text.count("\n") <= 1 and response.text.strip()
    return response.text.strip()


def paths(listing: list[dict]) -> list[str]:
    return [entry["path"] for entry in listing]


def test_test_service_and_auth(server: ServerProcess, api: Api) -> None:
    version = package_metadata.version("tus-staging")
    assert requests.get(f"{server.url}/test-service").text == f"staging service version: {version}"
    assert api.get("/test-auth").text == "I'm authenticated as alice"
    # Both header forms and the KBase session cookie are accepted.
    bearer = requests.get(f"{server.url}/test-auth", headers={"Authorization": "Bearer tok-bob"})
    assert bearer.text == "I'm authenticated as bob"
    cookie = requests.get(f"{server.url}/test-auth", cookies={"kbase_session": "tok-carol"})
    assert cookie.text == "I'm authenticated as carol"
    one_line_error(requests.get(f"{server.url}/test-auth"), 401)
    one_line_error(Api(server, None).get("/list/", headers={"Authorization": "nope"}), 401)


def make_tree(api: Api) -> None:
    api.put_file("data/a.txt", b"hello")
    api.put_file("data/.hidden", b"x")
    api.put_file("data/sub/deep.txt", b"deep\n")
    api.put_file("data/.hid/inner.txt", b"inner")
    api.put_file("top.bin", b"\x00\x01")


def test_list_is_recursive_with_sources(server: ServerProcess, api: Api) -> None:
    make_tree(api)
    listing = api.get("/list/data").json()
    # Folders first, then files, by name; a folder is followed by what it holds.
    assert paths(listing) == ["alice/data/sub", "alice/data/sub/deep.txt", "alice/data/a.txt"]
    sub, deep, a = listing
    assert sub == {
        "name": "sub", "path": "alice/data/sub", "mtime": api.ms("data/sub"),
        "size": os.stat(api.home / "data/sub").st_size, "isFolder": True,
    }  # fmt: skip
    assert a == {
        "name": "a.txt", "path": "alice/data/a.txt", "mtime": api.ms("data/a.txt"),
        "size": 5, "isFolder": False, "source": "Unknown",
    }  # fmt: skip
    assert deep["source"] == "Unknown"
    hidden = api.get("/list/data", params={"showHidden": "true"}).json()
    assert paths(hidden) == [
        "alice/data/.hid", "alice/data/.hid/inner.txt", "alice/data/sub",
        "alice/data/sub/deep.txt", "alice/data/.hidden", "alice/data/a.txt",
    ]  # fmt: skip
    # As the KBase service reads it: only "true" and "True" show hidden entries.
    assert api.get("/list/data", params={"showHidden": "1"}).json() == listing
    assert paths(api.get("/list/").json()) == [
        "alice/data", "alice/data/sub", "alice/data/sub/deep.txt", "alice/data/a.txt",
        "alice/top.bin",
    ]  # fmt: skip
    assert api.get("/list").json() == api.get("/list/").json()
    assert api.get("/list//data/").json() == listing
    # One level, for the web page and the command line.
    assert paths(api.get("/list/", params={"depth": "1"}).json()) == ["alice/data", "alice/top.bin"]
    assert paths(api.get("/list/data", params={"depth": "2"}).json()) == paths(listing)
    for bad in ("0", "-1", "x", "1.5", "²"):
        one_line_error(api.get("/list/", params={"depth": bad}), 400)
    assert one_line_error(api.get("/list/nothing-here"), 404) == (
        "path alice/nothing-here does not exist"
    )
    assert one_line_error(api.get("/list/data/a.txt"), 400) == (
        "alice/data/a.txt is a file not a directory"
    )
    # Listing computes no metadata: sources come from sidecars or a JGI file beside.
    assert not (api.meta / "data" / "a.txt").exists()
    assert "computing metadata" not in server.log()


def test_list_sources(server: ServerProcess, api: Api) -> None:
    TusTestClient(server.files_url, TOKENS["alice"]).upload(b"up\n", "up.txt", destPath="s")
    api.put_file("s/reads.fastq", b"@r\nACGT\n")
    api.put_file("s/.reads.fastq.jgi", b'{"file_name": "reads.fastq"}')
    api.put_file("s/plain.txt", b"plain")
    kbase_sidecar = api.meta / "s" / "plain.txt"
    kbase_sidecar.write_text(json.dumps({"source": "KBase upload"}))
    sources = {e["name"]: e.get("source") for e in api.get("/list/s").json()}
    assert sources == {
        "up.txt": "tus upload",
        "reads.fastq": "JGI import",
        "plain.txt": "KBase upload",
    }


def test_list_links(server: ServerProcess, api: Api) -> None:
    api.put_file("real/f.txt", b"f")
    os.symlink(api.home / "real", api.home / "linked")
    os.symlink(api.home / "real" / "f.txt", api.home / "file-link")
    os.symlink(server.data_dir, api.home / "outside")
    os.symlink(api.home / "gone", api.home / "dangling")
    os.symlink(api.home, api.home / "real" / "loop")
    os.mkfifo(api.home / "fifo")
    listing = api.get("/list/").json()
    # Links inside the area are listed as what they point to; a linked folder is not
    # walked (no loop, no tree listed twice); links out, dangling links and FIFOs are not
    # listed.
    assert paths(listing) == [
        "alice/linked", "alice/real", "alice/real/loop", "alice/real/f.txt", "alice/file-link",
    ]  # fmt: skip
    assert [e["isFolder"] for e in listing] == [True, True, True, False, False]


def test_existence_by_name_anywhere(api: Api) -> None:
    make_tree(api)
    api.put_file("other/sub", b"a file named like a folder")
    api.home.joinpath("only-folders", "sub2").mkdir(parents=True)
    api.home.joinpath("more", "sub2").mkdir(parents=True)

    def exists(query: str, **params: str) -> dict:
        response = api.get(f"/existence/{query}", params=params)
        assert response.status_code == 200, response.text
        return response.json()

    assert exists("deep.txt") == {"exists": True, "isFolder": False}
    assert exists("sub2") == {"exists": True, "isFolder": True}
    assert exists("sub") == {"exists": True, "isFolder": False}  # one of them is a file
    assert exists("inner.txt") == {"exists": False, "isFolder": False}  # in a hidden folder
    assert exists("inner.txt", showHidden="true") == {"exists": True, "isFolder": False}
    assert exists(".hidden") == {"exists": False, "isFolder": False}
    assert exists(".hidden", showHidden="True") == {"exists": True, "isFolder": False}
    assert exists("nothing") == {"exists": False, "isFolder": False}
    assert exists("") == {"exists": False, "isFolder": False}
    # A query with "/" is a path from the home.
    assert exists("data/sub") == {"exists": True, "isFolder": True}
    assert exists("data/a.txt") == {"exists": True, "isFolder": False}
    assert exists("data/deep.txt") == {"exists": False, "isFolder": False}


def test_search(api: Api) -> None:
    api.put_file("runs/reads_1.fq", b"1", mtime=1_700_000_300)
    api.put_file("runs/reads_2.fq", b"2", mtime=1_700_000_100)
    api.put_file("notes/reads.txt", b"n", mtime=1_700_000_200)
    api.put_file("notes/.reads.hidden", b"h", mtime=1_700_000_400)
    os.utime(api.home / "runs", (1_700_000_000, 1_700_000_000))
    os.utime(api.home / "notes", (1_600_000_000, 1_600_000_000))
    found = api.get("/search/reads").json()
    # Newest first.
    assert paths(found) == [
        "alice/runs/reads_1.fq",
        "alice/notes/reads.txt",
        "alice/runs/reads_2.fq",
    ]
    assert found[0]["source"] == "Unknown"
    hidden = api.get("/search/reads", params={"showHidden": "true"}).json()
    assert paths(hidden)[0] == "alice/notes/.reads.hidden"
    # The query is matched against the whole path, folders included (as in KBase).
    assert paths(api.get("/search/runs").json()) == [
        "alice/runs/reads_1.fq", "alice/runs/reads_2.fq", "alice/runs",
    ]  # fmt: skip
    assert len(api.get("/search/").json()) == 5
    assert api.get("/search/nothing-like-this").json() == []


def test_similar(api: Api) -> None:
    api.put_file("reads_1.fq", b"1")
    api.put_file("reads_2.fq", b"2")
    api.put_file("sub/reads_3.fq", b"3")
    api.put_file("sub/.reads_4.fq", b"4")
    api.put_file("notes.txt", b"n")
    api.home.joinpath("reads_5.fq").mkdir()
    found = api.get("/similar/reads_1.fq").json()
    assert sorted(paths(found)) == ["alice/reads_2.fq", "alice/sub/reads_3.fq"]
    assert all(entry["source"] == "Unknown" for entry in found)
    assert one_line_error(api.get("/similar/sub"), 400) == "alice/sub is a directory not a file"
    assert one_line_error(api.get("/similar/missing.fq"), 404) == (
        "path alice/missing.fq does not exist"
    )


def test_metadata_of_dropped_in_file_is_computed_and_cached(
    server: ServerProcess, api: Api
) -> None:
    text = "".join(f"line {i} ✓\n" for i in range(5000)).encode()
    path = api.put_file("dropped/notes.txt", text)
    record = api.get("/metadata/dropped/notes.txt").json()
    assert record == {
        "source": "Unknown",
        "md5": hashlib.md5(text).hexdigest(),
        "lineCount": "5000",
        "head": text.decode()[:1024],
        "tail": text.decode()[-1024:],
        "name": "notes.txt",
        "path": "alice/dropped/notes.txt",
        "mtime": api.ms("dropped/notes.txt"),
        "size": len(text),
        "isFolder": False,
        "isText": True,
        "uploadId": None,
    }
    sidecar = api.meta / "dropped" / "notes.txt"
    assert json.loads(sidecar.read_text()) == record
    assert api.get("/metadata/dropped/notes.txt").json() == record
    assert server.log().count("computing metadata of alice/dropped/notes.txt") == 1
    # A changed file is recomputed. Binary files count their lines too, as in KBase.
    binary = b"\x00\x01binary\nnow\n\xff"
    path.write_bytes(binary)
    changed = api.get("/metadata/dropped/notes.txt").json()
    assert changed["isText"] is False and changed["lineCount"] == "3"
    assert changed["head"] == changed["tail"] == "not text file"
    assert changed["md5"] == hashlib.md5(binary).hexdigest()


def test_corrupt_sidecar_is_recomputed(api: Api) -> None:
    api.put_file("c.txt", b"abc\n")
    sidecar = api.meta / "c.txt"
    sidecar.parent.mkdir(parents=True, exist_ok=True)
    for junk in (b'{"md5": "half', b"[1, 2]", b"\xff\xfe", b"", b'{"md5": 5}'):
        sidecar.write_bytes(junk)
        record = api.get("/metadata/c.txt").json()
        assert record["md5"] == hashlib.md5(b"abc\n").hexdigest()


def test_kbase_service_sidecars_are_read_as_it_reads_them(server: ServerProcess, api: Api) -> None:
    """A metadata file written by the KBase staging service has no size or mtime: it is
    fresh while it is newer than the file, as that service judges it."""
    api.put_file("k.txt", b"one\ntwo\n", mtime=1_700_000_000)
    theirs = {
        "source": "KBase upload", "md5": "0" * 32, "lineCount": "2",
        "head": "one\ntwo\n", "tail": "one\ntwo\n", "UPA": "1/2/3",
    }  # fmt: skip
    sidecar = api.meta / "k.txt"
    sidecar.parent.mkdir(parents=True, exist_ok=True)
    sidecar.write_text(json.dumps(theirs))
    os.utime(sidecar, (1_700_000_100, 1_700_000_100))
    record = api.get("/metadata/k.txt").json()
    assert record == {
        **theirs, "name": "k.txt", "path": "alice/k.txt", "mtime": 1_700_000_000_000,
        "size": 8, "isFolder": False,
    }  # fmt: skip
    assert "computing metadata" not in server.log()
    # Older than the file: recomputed; the source is guessed anew, the UPA kept (as KBase).
    os.utime(sidecar, (1_600_000_000, 1_600_000_000))
    record = api.get("/metadata/k.txt").json()
    assert record["md5"] == hashlib.md5(b"one\ntwo\n").hexdigest()
    assert record["source"] == "Unknown" and record["UPA"] == "1/2/3"
    # Ours, as the KBase service reads them: its five keys, all strings.
    ours = json.loads(sidecar.read_text())
    assert all(isinstance(ours[key], str) for key in ("source", "md5", "lineCount", "head", "tail"))


def test_stale_sidecars_in_the_way_are_cleared(api: Api) -> None:
    """A folder of sidecars where a file's sidecar goes (the folder was replaced by a file
    by other means), or a sidecar file where a folder of them goes: stale, replaced."""
    api.put_file("x", b"now a file\n")
    (api.meta / "x").mkdir(parents=True)
    (api.meta / "x" / "old.txt").write_text("{}")
    api.put_file("y/z.txt", b"z\n")
    (api.meta / "y").write_text('{"md5": "stale"}')
    for relative, data in (("x", b"now a file\n"), ("y/z.txt", b"z\n")):
        record = api.get(f"/metadata/{relative}").json()
        assert record["md5"] == hashlib.md5(data).hexdigest()
        assert json.loads((api.meta / relative).read_text()) == record


def test_metadata_of_folder_and_missing(api: Api) -> None:
    (api.home / "folder").mkdir(parents=True)
    record = api.get("/metadata/folder").json()
    assert record == {
        "name": "folder", "path": "alice/folder", "mtime": api.ms("folder"),
        "size": os.stat(api.home / "folder").st_size, "isFolder": True,
    }  # fmt: skip
    assert one_line_error(api.get("/metadata/missing.txt"), 404) == (
        "path alice/missing.txt does not exist"
    )


def test_metadata_of_jgi_import(api: Api) -> None:
    api.put_file("jgi/reads.fastq", b"@r\nACGT\n+\nIIII\n")
    api.put_file("jgi/.reads.fastq.jgi", b'{"file_id": 7}')
    assert api.get("/metadata/jgi/reads.fastq").json()["source"] == "JGI import"


def test_metadata_of_tus_upload_uses_its_sidecar(server: ServerProcess, api: Api) -> None:
    client = TusTestClient(server.files_url, TOKENS["alice"])
    client.upload(b"uploaded\n", "up.txt")
    record = api.get("/metadata/up.txt").json()
    assert record["source"] == "tus upload" and record["lineCount"] == "1"
    assert "computing metadata" not in server.log()


def test_define_upa(server: ServerProcess, api: Api) -> None:
    path = api.put_file("u/never-seen.txt", b"abc\n")
    answer = api.call("POST", "/define-upa/u/never-seen.txt", data={"UPA": "12/3/4"})
    assert answer.status_code == 200, answer.text
    assert answer.text == "succesfully updated UPA 12/3/4 for file alice/u/never-seen.txt"
    record = api.get("/metadata/u/never-seen.txt").json()
    assert record["UPA"] == "12/3/4" and record["md5"] == hashlib.md5(b"abc\n").hexdigest()
    assert json.loads((api.meta / "u" / "never-seen.txt").read_text())["UPA"] == "12/3/4"
    # JSON bodies too; a new UPA replaces the old one; a changed file keeps its UPA.
    assert api.call("POST", "/define-upa/u/never-seen.txt", json={"UPA": "5/6/7"}).ok
    path.write_bytes(b"changed\n")
    record = api.get("/metadata/u/never-seen.txt").json()
    assert record["UPA"] == "5/6/7" and record["md5"] == hashlib.md5(b"changed\n").hexdigest()
    assert one_line_error(api.call("POST", "/define-upa/u/never-seen.txt"), 400) == (
        "must provide UPA field in body"
    )
    one_line_error(api.call("POST", "/define-upa/u/never-seen.txt", data={"upa": "1/2/3"}), 400)
    one_line_error(api.call("POST", "/define-upa/u/none.txt", data={"UPA": "1/2/3"}), 404)
    one_line_error(api.call("POST", "/define-upa/u", data={"UPA": "1/2/3"}), 404)


def test_jgi_metadata(api: Api) -> None:
    api.put_file("j/reads.fastq", b"@r\n")
    api.put_file("j/.reads.fastq.jgi", json.dumps({"file_id": 7, "name": "ü"}).encode())
    assert api.get("/jgi-metadata/j/reads.fastq").json() == {"file_id": 7, "name": "ü"}
    assert one_line_error(api.get("/jgi-metadata/j/other.fastq"), 404) == (
        "could not find associated JGI metadata file for alice/j/other.fastq"
    )
    one_line_error(api.get("/jgi-metadata/"), 404)
    one_line_error(api.get("/jgi-metadata/j/" + "x" * 255), 404)  # too long to have one
    api.put_file("j/.broken.jgi", b"{not json")
    api.put_file("j/broken", b"b")
    one_line_error(api.get("/jgi-metadata/j/broken"), 422)


def test_download_with_range(api: Api) -> None:
    data = os.urandom(100_000)
    api.put_file("dl/blob.bin", data)
    whole = api.get("/download/dl/blob.bin")
    assert whole.status_code == 200
    assert whole.content == data
    assert whole.headers["Content-Type"] == "application/octet-stream"
    assert whole.headers["Content-Disposition"] == "attachment; filename*=UTF-8''blob.bin"
    part = api.get("/download/dl/blob.bin", headers={"Range": "bytes=1000-1999"})
    assert part.status_code == 206
    assert part.content == data[1000:2000]
    assert part.headers["Content-Range"] == "bytes 1000-1999/100000"
    unsatisfiable = api.get("/download/dl/blob.bin", headers={"Range": "bytes=200000-"})
    assert unsatisfiable.status_code == 416
    assert one_line_error(api.get("/download/dl"), 400) == "alice/dl is a directory not a file"
    one_line_error(api.get("/download/dl/none.bin"), 404)


def test_download_serves_the_named_file_not_a_compressed_sibling(api: Api) -> None:
    plain = b"the plain file\n" * 100
    api.put_file("data.txt", plain)
    api.put_file("data.txt.gz", gzip.compress(b"something else entirely"))
    api.put_file("data.txt.br", b"brotli-ish bytes")
    for encoding in ("gzip", "br", "gzip, deflate, br", "*"):
        answer = api.get("/download/data.txt", headers={"Accept-Encoding": encoding}, stream=True)
        raw = answer.raw.read()
        assert raw == plain, encoding
        assert "Content-Encoding" not in answer.headers


def test_delete(api: Api) -> None:
    api.put_file("del/one.txt", b"1")
    api.get("/metadata/del/one.txt")
    assert (api.meta / "del" / "one.txt").exists()
    answer = api.call("DELETE", "/delete/del/one.txt")
    assert answer.status_code == 200 and answer.text == "successfully deleted alice/del/one.txt"
    assert not (api.home / "del" / "one.txt").exists()
    assert not (api.meta / "del" / "one.txt").exists()
    api.put_file("tree/a/b.txt", b"b")
    api.get("/metadata/tree/a/b.txt")
    assert api.call("DELETE", "/delete/tree").status_code == 200
    assert not (api.home / "tree").exists() and not (api.meta / "tree").exists()
    assert one_line_error(api.call("DELETE", "/delete/tree"), 404) == "could not delete alice/tree"
    assert one_line_error(api.call("DELETE", "/delete/"), 403) == "cannot delete home directory"
    one_line_error(api.call("DELETE", "/delete//"), 403)
    one_line_error(api.call("DELETE", "/delete/."), 403)
    assert api.home.is_dir()
    # A link is deleted, never what it points to.
    api.put_file("kept/k.txt", b"k")
    os.symlink(api.home / "kept", api.home / "to-kept")
    assert api.call("DELETE", "/delete/to-kept").status_code == 200
    assert (api.home / "kept" / "k.txt").read_bytes() == b"k"
    # An orphan sidecar (its file gone by other means) goes too.
    (api.meta / "orphan.txt").write_text("{}")
    one_line_error(api.call("DELETE", "/delete/orphan.txt"), 404)
    assert not (api.meta / "orphan.txt").exists()


def test_delete_of_a_very_deep_tree(api: Api) -> None:
    folder = api.home / "deep"
    folder.mkdir(parents=True)
    for _ in range(1200):  # deeper than Python's recursion limit
        folder = folder / "d"
        folder.mkdir()
    (folder / "bottom.txt").write_bytes(b"b")
    assert api.call("DELETE", "/delete/deep").status_code == 200
    assert not (api.home / "deep").exists()


def test_move(api: Api) -> None:
    api.put_file("mv/src.txt", b"move me")
    api.home.joinpath("elsewhere").mkdir()
    before = api.get("/metadata/mv/src.txt").json()
    moved = api.call("PATCH", "/mv/mv/src.txt", data={"newPath": "/elsewhere/dst.txt"})
    assert moved.status_code == 200, moved.text
    assert moved.text == "successfully moved alice/mv/src.txt to alice/elsewhere/dst.txt"
    assert (api.home / "elsewhere" / "dst.txt").read_bytes() == b"move me"
    assert not (api.home / "mv" / "src.txt").exists()
    assert json.loads((api.meta / "elsewhere" / "dst.txt").read_text())["md5"] == before["md5"]
    assert not (api.meta / "mv" / "src.txt").exists()
    # The moved file's metadata names it where it is now.
    after = api.get("/metadata/elsewhere/dst.txt").json()
    assert (after["name"], after["path"]) == ("dst.txt", "alice/elsewhere/dst.txt")
    assert after["md5"] == before["md5"]
    # JSON bodies work too.
    assert api.call("PATCH", "/mv/elsewhere/dst.txt", json={"newPath": "back.txt"}).ok
    api.put_file("other.txt", b"x")
    assert (
        one_line_error(api.call("PATCH", "/mv/back.txt", json={"newPath": "other.txt"}), 409)
        == "alice/other.txt allready exists"
    )
    assert (api.home / "back.txt").read_bytes() == b"move me"
    assert one_line_error(api.call("PATCH", "/mv/back.txt", json={}), 400) == (
        "must provide newPath field in body"
    )
    one_line_error(api.call("PATCH", "/mv/back.txt", data={"newPath": "/"}), 400)
    one_line_error(
        api.call(
            "PATCH", "/mv/back.txt", data=b"{not json", headers={"Content-Type": "application/json"}
        ),
        400,
    )
    assert one_line_error(api.call("PATCH", "/mv/nope.txt", json={"newPath": "n.txt"}), 404) == (
        "alice/nope.txt not found"
    )
    # A refused newPath is named as the field the client sent.
    for bad in ("../bob/x", " lead.txt", "a\x01b"):
        reason = one_line_error(api.call("PATCH", "/mv/back.txt", json={"newPath": bad}), 400)
        assert reason.startswith("newPath "), (bad, reason)
    assert one_line_error(api.call("PATCH", "/mv/", json={"newPath": "x"}), 403) == (
        "cannot rename or move home directory"
    )
    # Into a folder that does not exist, or through a file: 409, nothing moved.
    one_line_error(api.call("PATCH", "/mv/back.txt", json={"newPath": "missing/x.txt"}), 409)
    one_line_error(api.call("PATCH", "/mv/back.txt", json={"newPath": "other.txt/x"}), 409)
    assert (api.home / "back.txt").read_bytes() == b"move me"


def test_move_of_a_folder_moves_its_sidecars(server: ServerProcess, api: Api) -> None:
    api.put_file("proj/a/one.txt", b"1")
    api.put_file("proj/two.txt", b"2")
    for relative in ("proj/a/one.txt", "proj/two.txt"):
        api.get(f"/metadata/{relative}")
    # A stale sidecar file where the target's folder of sidecars goes is cleared away.
    (api.meta / "renamed").write_text('{"md5": "stale"}')
    assert api.call("PATCH", "/mv/proj", data={"newPath": "renamed"}).status_code == 200
    assert sorted(p.name for p in (api.meta / "renamed").rglob("*.txt")) == ["one.txt", "two.txt"]
    assert not (api.meta / "proj").exists()
    record = api.get("/metadata/renamed/a/one.txt").json()
    assert record["path"] == "alice/renamed/a/one.txt"
    assert "computing metadata of alice/renamed" not in server.log()  # the moved sidecar


def test_move_into_own_subtree(api: Api) -> None:
    (api.home / "dir" / "inner").mkdir(parents=True)
    # Directly, and through a link inside the area that leads into the folder itself.
    os.symlink(api.home / "dir" / "inner", api.home / "shortcut")
    for new_path in ("dir/inside", "dir/inner/x", "shortcut/x", "dir"):
        answer = api.call("PATCH", "/mv/dir", json={"newPath": new_path})
        assert answer.status_code in (400, 409), (new_path, answer.text)
    assert (api.home / "dir" / "inner").is_dir()
    # Moving the link itself into the folder it leads to is fine: a link is no folder.
    assert api.call("PATCH", "/mv/shortcut", json={"newPath": "dir/inner/link"}).ok


def test_protected_globus_file(api: Api) -> None:
    api.put_file(".globus_id", b"alice@globusid.org")
    api.put_file("x.txt", b"x")
    assert one_line_error(api.call("DELETE", "/delete/.globus_id"), 403) == (
        "cannot delete protected file"
    )
    assert one_line_error(api.call("PATCH", "/mv/.globus_id", json={"newPath": "g"}), 403) == (
        "cannot rename or move protected file"
    )
    one_line_error(api.call("PATCH", "/mv/x.txt", json={"newPath": ".globus_id"}), 403)
    one_line_error(api.call("POST", "/mkdir/.globus_id"), 403)
    assert (api.home / ".globus_id").read_bytes() == b"alice@globusid.org"


def test_mkdir(api: Api) -> None:
    created = api.call("POST", "/mkdir/new/deeper")
    assert created.status_code == 201
    assert created.json()["isFolder"] is True
    assert created.json()["path"] == "alice/new/deeper"
    assert api.call("POST", "/mkdir/new/deeper").status_code == 200
    api.put_file("file.txt", b"f")
    one_line_error(api.call("POST", "/mkdir/file.txt/sub"), 409)
    one_line_error(api.call("POST", "/mkdir/ leading-space"), 400)
    one_line_error(api.call("POST", "/mkdir/a\u2028b"), 400)


def test_file_lifetime_and_importers_need_their_flags(api: Api) -> None:
    one_line_error(requests.get(f"{api.url}/file-lifetime"), 404)
    one_line_error(requests.get(f"{api.url}/importer_filetypes/"), 404)
    one_line_error(requests.get(f"{api.url}/importer_mappings/?file_list=a.fq"), 404)


MAPPINGS = {
    "types": {
        "fq": {
            "file_ext_type": ["FASTQ"],
            "mappings": [{"id": "fastq_reads", "title": "Reads", "app_weight": 1}],
        },
        "fq.gz": {
            "file_ext_type": ["FASTQ"],
            "mappings": [{"id": "fastq_reads", "title": "Reads", "app_weight": 1}],
        },
        "gz": {
            "file_ext_type": ["CompressedFileFormatArchive"],
            "mappings": [{"id": "decompress", "title": "Decompress", "app_weight": 1}],
        },
        "fa": {
            "file_ext_type": ["FASTA"],
            "mappings": [
                {"id": "assembly", "title": "Assembly", "app_weight": 1},
                {"id": "gff_genome", "title": "GFF", "app_weight": 1},
            ],
        },
        "gff": {
            "file_ext_type": ["GFF"],
            "mappings": [{"id": "gff_genome", "title": "GFF", "app_weight": 1}],
        },
    }
}


def test_file_lifetime_and_importers(tmp_path: Path, make_server) -> None:
    mappings = tmp_path / "supported_apps_w_extensions.json"
    mappings.write_text(json.dumps(MAPPINGS))
    server = make_server("--importer-mappings", str(mappings), "--file-lifetime", "90")
    assert requests.get(f"{server.url}/file-lifetime").text == "90"
    filetypes = requests.get(f"{server.url}/importer_filetypes/").json()
    assert filetypes == {
        "datatype_to_filetype": {
            "fastq_reads": ["FASTQ"], "decompress": ["CompressedFileFormatArchive"],
            "assembly": ["FASTA"], "gff_genome": ["FASTA", "GFF"],
        },
        "filetype_to_extensions": {
            "FASTQ": ["fq", "fq.gz"], "CompressedFileFormatArchive": ["gz"], "FASTA": ["fa"],
            "GFF": ["gff"],
        },
    }  # fmt: skip
    assert requests.get(f"{server.url}/importer_filetypes").json() == filetypes
    answer = requests.get(
        f"{server.url}/importer_mappings/",
        params={"file_list": ["file1.txt", "file.tar.gz", "my.reads.FQ.gz", "g.gff"]},
    ).json()
    assert answer["mappings"] == [
        None,
        MAPPINGS["types"]["gz"]["mappings"],
        MAPPINGS["types"]["fq.gz"]["mappings"],  # the longest suffix wins
        MAPPINGS["types"]["gff"]["mappings"],
    ]
    assert answer["fileinfo"] == [
        {"prefix": "file1.txt", "suffix": None, "file_ext_type": []},
        {"prefix": "file.tar", "suffix": "gz", "file_ext_type": ["CompressedFileFormatArchive"]},
        {"prefix": "my.reads", "suffix": "FQ.gz", "file_ext_type": ["FASTQ"]},
        {"prefix": "g", "suffix": "gff", "file_ext_type": ["GFF"]},
    ]
    for query in ("", "?apple=1", "?file_list="):
        answer = requests.get(f"{server.url}/importer_mappings/{query}")
        assert one_line_error(answer, 400).startswith("must provide file_list field.")


@pytest.mark.parametrize(
    "content", ["{not json", '{"types": []}', '{"types": {"fq": {"file_ext_type": []}}}']
)
def test_a_bad_mappings_file_stops_the_start(tmp_path: Path, make_server, content: str) -> None:
    mappings = tmp_path / "mappings.json"
    mappings.write_text(content)
    with pytest.raises(RuntimeError, match=r"--importer-mappings: .*mappings\.json"):
        make_server("--importer-mappings", str(mappings))


def raw_get(server: ServerProcess, target: str, token: str) -> int:
    """Send a request line exactly as given (no client-side path normalisation)."""
    return raw_status(
        server,
        f"GET {target} HTTP/1.1\r\nHost: x\r\nAuthorization: {token}\r\n"
        "Connection: close\r\n\r\n".encode(),
    )


@pytest.mark.parametrize(
    "target",
    [
        "/download/../bob/secret.txt",
        "/download/%2e%2e/bob/secret.txt",
        "/download/..%2fbob%2fsecret.txt",
        "/download/%2E%2E%2Fbob%2Fsecret.txt",
        "/download/link/secret.txt",
        "/download/..\\bob\\secret.txt",
        "/metadata/../bob/secret.txt",
        "/jgi-metadata/link/secret.txt",
        "/similar/link/secret.txt",
        "/list/../bob",
        "/list/%2e%2e",
        "/list/link",
        "/existence/../bob/secret.txt",
        "/download/%00",
    ],
)
def test_other_users_files_are_unreachable(server: ServerProcess, api: Api, target: str) -> None:
    bob = Api(server, "bob")
    bob.put_file("secret.txt", b"bob's secret")
    bob.put_file(".secret.txt.jgi", b'{"bob": "secret"}')
    api.home.mkdir(parents=True, exist_ok=True)
    os.symlink(bob.home, api.home / "link")
    status = raw_get(server, target, TOKENS["alice"])
    assert status in (400, 404), status
    assert (bob.home / "secret.txt").read_bytes() == b"bob's secret"
