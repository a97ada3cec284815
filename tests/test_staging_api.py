"""The staging API routes: every success and error path, against the real server."""

from __future__ import annotations

import hashlib
import json
import os
import socket
from pathlib import Path

import pytest
import requests

from .servers import TOKENS, ServerProcess
from .tus_client import TusTestClient


class Api:
    def __init__(self, server: ServerProcess, user: str | None):
        self.url = server.url
        self.home = server.data_dir / "staging" / (user or "")
        self.meta = server.data_dir / "metadata" / (user or "")
        self.headers = {"Authorization": TOKENS[user]} if user else {}

    def get(self, route: str, **kwargs) -> requests.Response:
        return requests.get(
            f"{self.url}{route}", headers={**self.headers, **kwargs.pop("headers", {})}, **kwargs
        )

    def call(self, method: str, route: str, **kwargs) -> requests.Response:
        headers = {**self.headers, **(kwargs.pop("headers", None) or {})}
        return requests.request(method, f"{self.url}{route}", headers=headers, **kwargs)

    def put_file(self, relative: str, data: bytes) -> Path:
        path = self.home / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path


@pytest.fixture
def api(server: ServerProcess) -> Api:
    return Api(server, "alice")


def one_line_error(response: requests.Response, status: int) -> str:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.text.count("\n") <= 1 and response.text.strip()
    return response.text


def test_test_service_and_auth(server: ServerProcess, api: Api) -> None:
    assert requests.get(f"{server.url}/test-service").text == (
        "This is just a test. This is only a test."
    )
    assert api.get("/test-auth").text == "I'm authenticated as alice"
    # Both header forms and the KBase session cookie are accepted.
    bearer = requests.get(f"{server.url}/test-auth", headers={"Authorization": "Bearer tok-bob"})
    assert bearer.text == "I'm authenticated as bob"
    cookie = requests.get(f"{server.url}/test-auth", cookies={"kbase_session": "tok-carol"})
    assert cookie.text == "I'm authenticated as carol"
    one_line_error(requests.get(f"{server.url}/test-auth"), 401)
    one_line_error(Api(server, None).get("/list/", headers={"Authorization": "nope"}), 401)


def test_list(api: Api) -> None:
    api.put_file("data/a.txt", b"hello")
    api.put_file("data/.hidden", b"x")
    (api.home / "data" / "sub").mkdir()
    listing = api.get("/list/data").json()
    assert [e["name"] for e in listing] == ["sub", "a.txt"]
    a = listing[1]
    assert a["path"] == "alice/data/a.txt"
    assert a["size"] == 5
    assert a["isFolder"] is False
    assert a["mtime"] == int(os.stat(api.home / "data" / "a.txt").st_mtime * 1000)
    assert listing[0]["isFolder"] is True
    hidden = api.get("/list/data", params={"showHidden": "true"}).json()
    assert ".hidden" in [e["name"] for e in hidden]
    assert [e["name"] for e in api.get("/list/").json()] == ["data"]
    assert [e["name"] for e in api.get("/list//data/").json()] == ["sub", "a.txt"]
    one_line_error(api.get("/list/nothing-here"), 404)
    one_line_error(api.get("/list/data/a.txt"), 400)


def test_listing_does_not_hash(server: ServerProcess, api: Api) -> None:
    api.put_file("big/file.bin", os.urandom(1000))
    assert api.get("/list/big").status_code == 200
    assert not (api.meta / "big" / "file.bin").exists()
    assert "computing metadata" not in server.log()


def test_metadata_of_dropped_in_file_is_computed_and_cached(
    server: ServerProcess, api: Api
) -> None:
    text = "".join(f"line {i} ✓\n" for i in range(5000)).encode()
    path = api.put_file("dropped/notes.txt", text)
    record = api.get("/metadata/dropped/notes.txt").json()
    assert record["md5"] == hashlib.md5(text).hexdigest()
    assert record["lineCount"] == 5000
    assert record["isText"] is True
    assert record["head"] == text.decode()[:1024]
    assert record["tail"] == text.decode()[-1024:]
    assert record["size"] == len(text)
    assert record["source"] == "Unknown" and record["uploadId"] is None
    sidecar = api.meta / "dropped" / "notes.txt"
    assert json.loads(sidecar.read_text()) == record
    assert api.get("/metadata/dropped/notes.txt").json() == record
    assert server.log().count("computing metadata of alice/dropped/notes.txt") == 1
    # A changed file is recomputed.
    path.write_bytes(b"\x00\x01binary now")
    changed = api.get("/metadata/dropped/notes.txt").json()
    assert changed["isText"] is False and changed["lineCount"] is None
    assert changed["md5"] == hashlib.md5(b"\x00\x01binary now").hexdigest()


def test_corrupt_sidecar_is_recomputed(api: Api) -> None:
    api.put_file("c.txt", b"abc\n")
    sidecar = api.meta / "c.txt"
    sidecar.parent.mkdir(parents=True, exist_ok=True)
    for junk in (b'{"md5": "half', b"[1, 2]", b"\xff\xfe", b""):
        sidecar.write_bytes(junk)
        record = api.get("/metadata/c.txt").json()
        assert record["md5"] == hashlib.md5(b"abc\n").hexdigest()


def test_metadata_of_folder_and_missing(api: Api) -> None:
    (api.home / "folder").mkdir(parents=True)
    record = api.get("/metadata/folder").json()
    assert record["isFolder"] is True and record["name"] == "folder"
    one_line_error(api.get("/metadata/missing.txt"), 404)


def test_metadata_of_tus_upload_uses_its_sidecar(server: ServerProcess, api: Api) -> None:
    client = TusTestClient(server.files_url, TOKENS["alice"])
    client.upload(b"uploaded\n", "up.txt")
    record = api.get("/metadata/up.txt").json()
    assert record["source"] == "tus upload"
    assert "computing metadata" not in server.log()


def test_download_with_range(api: Api) -> None:
    data = os.urandom(100_000)
    api.put_file("dl/blob.bin", data)
    whole = api.get("/download/dl/blob.bin")
    assert whole.status_code == 200
    assert whole.content == data
    assert "blob.bin" in whole.headers["Content-Disposition"]
    part = api.get("/download/dl/blob.bin", headers={"Range": "bytes=1000-1999"})
    assert part.status_code == 206
    assert part.content == data[1000:2000]
    assert part.headers["Content-Range"] == "bytes 1000-1999/100000"
    unsatisfiable = api.get("/download/dl/blob.bin", headers={"Range": "bytes=200000-"})
    assert unsatisfiable.status_code == 416
    one_line_error(api.get("/download/dl"), 400)
    one_line_error(api.get("/download/dl/none.bin"), 404)


def test_delete(api: Api) -> None:
    api.put_file("del/one.txt", b"1")
    api.get("/metadata/del/one.txt")
    assert (api.meta / "del" / "one.txt").exists()
    assert api.call("DELETE", "/delete/del/one.txt").status_code == 200
    assert not (api.home / "del" / "one.txt").exists()
    assert not (api.meta / "del" / "one.txt").exists()
    api.put_file("tree/a/b.txt", b"b")
    assert api.call("DELETE", "/delete/tree").status_code == 200
    assert not (api.home / "tree").exists()
    one_line_error(api.call("DELETE", "/delete/tree"), 404)
    one_line_error(api.call("DELETE", "/delete/"), 403)
    one_line_error(api.call("DELETE", "/delete//"), 403)
    assert api.home.is_dir()


def test_move(api: Api) -> None:
    api.put_file("mv/src.txt", b"move me")
    api.get("/metadata/mv/src.txt")
    moved = api.call("PATCH", "/mv/mv/src.txt", json={"newPath": "/elsewhere/dst.txt"})
    assert moved.status_code == 200, moved.text
    assert (api.home / "elsewhere" / "dst.txt").read_bytes() == b"move me"
    assert not (api.home / "mv" / "src.txt").exists()
    assert json.loads((api.meta / "elsewhere" / "dst.txt").read_text())["size"] == 7
    assert not (api.meta / "mv" / "src.txt").exists()
    # Form bodies work too (the old service's clients send forms).
    form = api.call("PATCH", "/mv/elsewhere/dst.txt", data={"newPath": "back.txt"})
    assert form.status_code == 200
    api.put_file("other.txt", b"x")
    one_line_error(api.call("PATCH", "/mv/back.txt", json={"newPath": "other.txt"}), 409)
    assert (api.home / "back.txt").read_bytes() == b"move me"
    one_line_error(api.call("PATCH", "/mv/back.txt", json={}), 400)
    one_line_error(
        api.call(
            "PATCH", "/mv/back.txt", data=b"{not json", headers={"Content-Type": "application/json"}
        ),
        400,
    )
    one_line_error(api.call("PATCH", "/mv/nope.txt", json={"newPath": "n.txt"}), 404)
    one_line_error(api.call("PATCH", "/mv/back.txt", json={"newPath": "../bob/x"}), 400)
    one_line_error(api.call("PATCH", "/mv/", json={"newPath": "x"}), 403)
    (api.home / "dir").mkdir()
    one_line_error(api.call("PATCH", "/mv/dir", json={"newPath": "dir/inside"}), 400)


def test_existence_and_mkdir(api: Api) -> None:
    assert api.get("/existence/new").json() == {"exists": False, "isFolder": False}
    created = api.call("POST", "/mkdir/new/deeper")
    assert created.status_code == 201
    assert created.json()["isFolder"] is True
    assert api.call("POST", "/mkdir/new/deeper").status_code == 200
    assert api.get("/existence/new/deeper").json() == {"exists": True, "isFolder": True}
    api.put_file("file.txt", b"f")
    assert api.get("/existence/file.txt").json() == {"exists": True, "isFolder": False}
    one_line_error(api.call("POST", "/mkdir/file.txt/sub"), 409)


def raw_get(server: ServerProcess, target: str, token: str) -> int:
    """Send a request line exactly as given (no client-side path normalisation)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            f"GET {target} HTTP/1.1\r\nHost: x\r\nAuthorization: {token}\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        head = sock.recv(4096).decode("latin-1")
    return int(head.split(" ", 2)[1])


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
        "/list/../bob",
        "/list/%2e%2e",
        "/existence/../bob/secret.txt",
        "/download/%00",
    ],
)
def test_other_users_files_are_unreachable(server: ServerProcess, api: Api, target: str) -> None:
    bob = Api(server, "bob")
    bob.put_file("secret.txt", b"bob's secret")
    api.home.mkdir(parents=True, exist_ok=True)
    os.symlink(bob.home, api.home / "link")
    status = raw_get(server, target, TOKENS["alice"])
    assert status in (400, 404), status
    assert (bob.home / "secret.txt").read_bytes() == b"bob's secret"
