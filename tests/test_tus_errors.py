"""Every refusal: the exact status, a one-line reason, and the upload left unchanged."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator

import pytest
import requests

from .servers import ServerProcess
from .tus_client import TusTestClient, encode_metadata

pytestmark = pytest.mark.in_process

OCTET = "application/offset+octet-stream"


def assert_refused(response: requests.Response, status: int) -> None:
    assert response.status_code == status, (response.status_code, response.text)
    if response.request.method != "HEAD":  # HEAD answers carry no body
        reason = response.text
        assert reason.endswith("\n") and reason.count("\n") == 1 and len(reason) > 5, reason
    assert response.headers["Tus-Resumable"] == "1.0.0"
    assert "Upload-Offset" not in response.headers


@pytest.fixture
def upload(server: ServerProcess, alice: TusTestClient) -> Iterator[str]:
    """An upload of 1000 bytes with 100 committed; each test checks it stays so."""
    url = alice.create_url(1000, "victim.bin")
    assert alice.patch(url, 0, b"a" * 100).status_code == 204
    yield url
    head = alice.head(url)
    assert head.status_code == 200
    assert head.headers["Upload-Offset"] == "100"
    assert head.headers["Upload-Length"] == "1000"


def test_missing_tus_resumable_is_412(alice: TusTestClient, upload: str) -> None:
    headers = alice.headers(Upload_Offset="100", Content_Type=OCTET)
    del headers["Tus-Resumable"]
    response = requests.patch(upload, headers=headers, data=b"b")
    assert_refused(response, 412)
    assert response.headers["Tus-Version"] == "1.0.0"


def test_unsupported_tus_resumable_is_412(alice: TusTestClient, upload: str) -> None:
    response = alice.session.head(upload, headers=alice.headers(Tus_Resumable="0.2.2"))
    assert response.status_code == 412
    assert response.headers["Tus-Version"] == "1.0.0"
    post = requests.post(
        alice.files_url, headers=alice.headers(Tus_Resumable="2.0.0", Upload_Length="5")
    )
    assert_refused(post, 412)


@pytest.mark.parametrize("content_type", [None, "application/octet-stream", "text/plain"])
def test_wrong_content_type_is_415(
    alice: TusTestClient, upload: str, content_type: str | None
) -> None:
    headers = alice.headers(Upload_Offset="100")
    if content_type:
        headers["Content-Type"] = content_type
    assert_refused(requests.patch(upload, headers=headers, data=b"b"), 415)


@pytest.mark.parametrize(
    "offset", [None, "-1", "abc", "1.5", "0x10", "", "1 2", "99999999999999999999"]
)
def test_bad_upload_offset_is_400(alice: TusTestClient, upload: str, offset: str | None) -> None:
    headers = alice.headers(Content_Type=OCTET)
    if offset is not None:
        headers["Upload-Offset"] = offset
    response = requests.patch(upload, headers=headers, data=b"b")
    assert_refused(response, 400)
    assert "Upload-Offset" in response.text


def test_offset_mismatch_is_409(alice: TusTestClient, upload: str) -> None:
    assert_refused(alice.patch(upload, 0, b"b"), 409)
    assert_refused(alice.patch(upload, 101, b"b"), 409)


def test_body_past_length_is_413(alice: TusTestClient, upload: str) -> None:
    assert_refused(alice.patch(upload, 100, b"b" * 901), 413)


def test_chunked_body_past_length_is_413(alice: TusTestClient, server: ServerProcess) -> None:
    url = alice.create_url(1000, "chunked.bin")

    def body() -> Iterator[bytes]:
        for _ in range(20):
            yield b"c" * 100

    headers = alice.headers(Upload_Offset="0", Content_Type=OCTET)
    response = requests.patch(url, headers=headers, data=body())
    assert response.status_code == 413
    # The bytes up to the length were received whole and kept; nothing past it.
    assert alice.offset(url) <= 1000


def test_unknown_upload_is_404(alice: TusTestClient) -> None:
    for url in (alice.files_url + "0" * 32, alice.files_url + "not-an-id"):
        assert_refused(alice.head(url), 404)
        assert_refused(alice.patch(url, 0, b"x"), 404)
        assert_refused(alice.delete(url), 404)


def test_other_users_upload_is_404(bob: TusTestClient, upload: str) -> None:
    assert_refused(bob.head(upload), 404)
    assert_refused(bob.patch(upload, 100, b"b"), 404)
    assert_refused(bob.delete(upload), 404)


@pytest.mark.parametrize("token", [None, "wrong-token"])
def test_no_valid_credentials_is_401(alice: TusTestClient, upload: str, token: str | None) -> None:
    stranger = TusTestClient(alice.files_url, token)
    assert stranger.create(10).status_code == 401
    assert_refused(stranger.create(10), 401)
    assert_refused(stranger.head(upload), 401)
    assert_refused(stranger.patch(upload, 100, b"b"), 401)
    assert_refused(stranger.delete(upload), 401)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


CREATION_ERRORS = [
    ({}, "Upload-Length"),
    ({"Upload-Length": "-5"}, "Upload-Length"),
    ({"Upload-Length": "ten"}, "Upload-Length"),
    ({"Upload-Length": "10", "Upload-Defer-Length": "1"}, "not both"),
    ({"Upload-Defer-Length": "2"}, "Upload-Defer-Length"),
    ({"Upload-Length": "10", "Upload-Metadata": "filename !!notbase64"}, "filename"),
    (
        {"Upload-Length": "10", "Upload-Metadata": f"filename {b64('a')},filename {b64('b')}"},
        "filename",
    ),
    ({"Upload-Length": "10", "Upload-Metadata": f"filename {b64('a')},,x"}, "Upload-Metadata"),
    ({"Upload-Length": "10", "Upload-Metadata": f"destPath {b64('x')}"}, "filename"),
    ({"Upload-Length": "10"}, "filename"),
]


@pytest.mark.parametrize(("headers", "mentions"), CREATION_ERRORS)
def test_malformed_creation_is_400(
    server: ServerProcess, alice: TusTestClient, headers: dict[str, str], mentions: str
) -> None:
    response = requests.post(alice.files_url, headers=alice.headers(**{
        k.replace("-", "_"): v for k, v in headers.items()
    }))  # fmt: skip
    assert_refused(response, 400)
    assert mentions.lower() in response.text.lower()
    assert not list((server.data_dir / "uploads").iterdir())


UNSAFE_DESTINATIONS = [
    {"filename": "../escape.txt"},
    {"filename": ".."},
    {"filename": "a/b.txt"},
    {"filename": "/etc/passwd"},
    {"filename": "bad\x00name"},
    {"filename": "bell\x07.txt"},
    {"filename": "line\nbreak.txt"},
    {"filename": " leading-space.txt"},
    {"filename": ""},
    {"filename": "x" * 256},
    {"filename": "ok.txt", "destPath": "C:/x"},
    {"filename": "evil\u202etxt.exe"},
    {"filename": "zero\u200bwidth.txt"},
    {"filename": "ok.txt", "destPath": "/".join(["d"] * 101)},
    {"filename": "ok.txt", "destPath": "../../other"},
    {"filename": "ok.txt", "destPath": "a/../../b"},
    {"filename": "ok.txt", "destPath": "C:\\Windows"},
    {"filename": "ok.txt", "destPath": "dir\\sub"},
    {"filename": "ok.txt", "destPath": "a/\x01/b"},
    {"filename": "ok.txt", "relativePath": "/../../x/ok.txt"},
]


@pytest.mark.parametrize("meta", UNSAFE_DESTINATIONS)
def test_unsafe_destination_is_400(
    server: ServerProcess, alice: TusTestClient, meta: dict[str, str]
) -> None:
    header = ",".join(f"{k} {b64(v)}" if v else k for k, v in meta.items())
    response = requests.post(
        alice.files_url, headers=alice.headers(Upload_Length="10", Upload_Metadata=header)
    )
    assert_refused(response, 400)
    assert not list((server.data_dir / "uploads").iterdir())


def test_filename_not_utf8_is_400(alice: TusTestClient) -> None:
    header = "filename " + base64.b64encode(b"\xff\xfe.bin").decode()
    response = requests.post(
        alice.files_url, headers=alice.headers(Upload_Length="10", Upload_Metadata=header)
    )
    assert_refused(response, 400)


def test_symlink_out_of_area_is_400(server: ServerProcess, alice: TusTestClient) -> None:
    home = server.data_dir / "staging" / "alice"
    home.mkdir(parents=True, exist_ok=True)
    outside = server.data_dir / "outside"
    outside.mkdir()
    os.symlink(outside, home / "link")
    response = alice.create(10, "f.txt", destPath="link/sub")
    assert_refused(response, 400)
    # Another user's area is outside too.
    bob_home = server.data_dir / "staging" / "bob"
    bob_home.mkdir(parents=True)
    os.symlink(bob_home, home / "to-bob")
    assert_refused(alice.create(10, "f.txt", destPath="to-bob"), 400)


def test_destination_is_a_directory_is_400(server: ServerProcess, alice: TusTestClient) -> None:
    (server.data_dir / "staging" / "alice" / "adir").mkdir(parents=True)
    assert_refused(alice.create(10, "adir"), 400)


def test_length_over_max_size_is_413(make_server, tokens_file) -> None:
    server = make_server("--max-size", "1000")
    alice = TusTestClient(server.files_url, "tok-alice")
    assert_refused(alice.create(1001), 413)
    assert alice.create(1000).status_code == 201
    url = alice.create_url(None)
    assert_refused(alice.patch(url, 0, b"x" * 1001), 413)
    assert_refused(alice.patch(url, 0, b"x", Upload_Length="1001"), 413)
    assert alice.offset(url) == 0


def test_deferred_length_errors(alice: TusTestClient) -> None:
    url = alice.create_url(None, "deferred.bin")
    assert alice.patch(url, 0, b"x" * 50).status_code == 204
    assert_refused(alice.patch(url, 50, b"", Upload_Length="10"), 400)
    assert_refused(alice.patch(url, 50, b"", Upload_Length="-1"), 400)
    assert alice.patch(url, 50, b"", Upload_Length="100").status_code == 204
    assert_refused(alice.patch(url, 50, b"", Upload_Length="200"), 400)
    assert alice.head(url).headers["Upload-Length"] == "100"


def test_patch_on_complete_upload(alice: TusTestClient) -> None:
    url = alice.upload(b"done", "done.txt")
    assert_refused(alice.patch(url, 4, b"more"), 413)
    assert_refused(alice.patch(url, 0, b"more"), 409)
    assert alice.patch(url, 4, b"").status_code == 204


def test_metadata_header_is_echoed_exactly(alice: TusTestClient) -> None:
    header = encode_metadata(filename="ü.txt", note="ok") + ",flag"
    response = requests.post(
        alice.files_url, headers=alice.headers(Upload_Length="3", Upload_Metadata=header)
    )
    assert response.status_code == 201
    assert alice.head(alice.location(response)).headers["Upload-Metadata"] == header


def test_a_deferred_length_body_past_max_size_says_so(make_server) -> None:
    server = make_server("--max-size", "1000")
    alice = TusTestClient(server.files_url, "tok-alice")
    url = alice.create_url(None, "deferred.bin")

    def body() -> Iterator[bytes]:
        for _ in range(20):
            yield b"c" * 100

    headers = alice.headers(Upload_Offset="0", Content_Type=OCTET)
    response = requests.patch(url, headers=headers, data=body())
    assert_refused(response, 413)
    assert "largest upload allowed" in response.text and "None" not in response.text
    assert alice.offset(url) <= 1000
