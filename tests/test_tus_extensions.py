"""checksum, expiration, concatenation(-unfinished), CORS and proxy-aware Location."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import subprocess
import sys
import time
import zlib
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest
import requests

from .checks import sidecar, staged
from .servers import TOKENS, ServerProcess, fast_forward_expiry
from .test_tus_errors import assert_refused
from .tus_client import TusTestClient, encode_metadata, upload_id_of

pytestmark = pytest.mark.in_process


def checksum_header(algorithm: str, data: bytes) -> str:
    if algorithm == "crc32":
        digest = zlib.crc32(data).to_bytes(4, "big")
    else:
        digest = hashlib.new(algorithm, data).digest()
    return f"{algorithm} {base64.b64encode(digest).decode()}"


# --- checksum ---------------------------------------------------------------------------


def test_options_advertises_all_extensions_and_checksums(server: ServerProcess) -> None:
    response = requests.options(server.files_url)
    assert set(response.headers["Tus-Extension"].split(",")) == {
        "creation", "creation-with-upload", "creation-defer-length", "termination",
        "checksum", "expiration", "concatenation", "concatenation-unfinished",
    }  # fmt: skip
    assert response.headers["Tus-Checksum-Algorithm"].split(",") == [
        "sha1", "md5", "sha256", "crc32",
    ]  # fmt: skip


@pytest.mark.parametrize("algorithm", ["sha1", "md5", "sha256", "crc32"])
def test_matching_checksum_is_accepted(
    server: ServerProcess, alice: TusTestClient, algorithm: str
) -> None:
    data = os.urandom(2_500_000)
    url = alice.create_url(len(data), f"ok-{algorithm}.bin")
    first, second = data[:1_000_000], data[1_000_000:]
    for offset, chunk in ((0, first), (1_000_000, second)):
        response = alice.patch(
            url, offset, chunk, Upload_Checksum=checksum_header(algorithm, chunk)
        )
        assert response.status_code == 204, response.text
    assert staged(server, "alice", f"ok-{algorithm}.bin").read_bytes() == data


def test_mismatching_checksum_is_460_and_chunk_discarded(
    server: ServerProcess, alice: TusTestClient
) -> None:
    data = os.urandom(3_000_000)
    url = alice.create_url(len(data), "guarded.bin")
    assert alice.patch(url, 0, data[:1_000_000]).status_code == 204
    chunk = data[1_000_000:2_500_000]
    wrong = checksum_header("sha1", chunk[:-1] + bytes([chunk[-1] ^ 1]))
    assert_refused(alice.patch(url, 1_000_000, chunk, Upload_Checksum=wrong), 460)
    assert alice.offset(url) == 1_000_000
    partial = server.data_dir / "uploads" / (url.rsplit("/", 1)[1] + ".part")
    assert partial.stat().st_size == 1_000_000  # the discarded bytes are gone
    # The digest state was not touched by the rejected chunk: the final md5 is right.
    rest = data[1_000_000:]
    ok = alice.patch(url, 1_000_000, rest, Upload_Checksum=checksum_header("md5", rest))
    assert ok.status_code == 204
    assert sidecar(server, "alice", "guarded.bin")["md5"] == hashlib.md5(data).hexdigest()


def test_checksum_on_a_chunk_larger_than_the_checkpoint(make_server) -> None:
    server = make_server("--checkpoint-bytes", "1M")
    alice = TusTestClient(server.files_url, TOKENS["alice"])
    data = os.urandom(5_000_000)
    url = alice.create_url(len(data), "big-chunk.bin")
    wrong = checksum_header("sha256", b"something else")
    assert_refused(alice.patch(url, 0, data, Upload_Checksum=wrong), 460)
    assert alice.offset(url) == 0  # no checkpoint committed part of an unverified body
    good = alice.patch(url, 0, data, Upload_Checksum=checksum_header("sha256", data))
    assert good.status_code == 204
    assert staged(server, "alice", "big-chunk.bin").read_bytes() == data


@pytest.mark.parametrize("header", ["sha512 AAAA", "md5", "md5 !!!", "crc32 AAAAAAAA"])
def test_bad_checksum_header_is_400(alice: TusTestClient, header: str) -> None:
    url = alice.create_url(10, "c.bin")
    assert_refused(alice.patch(url, 0, b"0123456789", Upload_Checksum=header), 400)
    assert alice.offset(url) == 0


def test_checksum_with_creation_with_upload(server: ServerProcess, alice: TusTestClient) -> None:
    data = os.urandom(100_000)
    headers = alice.headers(
        Upload_Length=str(len(data)),
        Upload_Metadata=encode_metadata(filename="cwu.bin"),
        Content_Type="application/offset+octet-stream",
        Upload_Checksum=checksum_header("sha1", b"wrong"),
    )
    response = requests.post(alice.files_url, headers=headers, data=data)
    assert response.status_code == 460
    assert not staged(server, "alice", "cwu.bin").exists()


# --- expiration -------------------------------------------------------------------------


IMF_FIXDATE = (
    r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), [0-9]{2} "
    r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [0-9]{4} [0-9]{2}:[0-9]{2}:[0-9]{2} GMT"
)


def test_upload_expires_header_on_post_patch_head(alice: TusTestClient) -> None:
    before = time.time()
    response = alice.create(100, "exp.bin")
    # An IMF-fixdate (RFC 9110), as the tus expiration extension asks.
    assert re.fullmatch(IMF_FIXDATE, response.headers["Upload-Expires"])
    created = parsedate_to_datetime(response.headers["Upload-Expires"]).timestamp()
    week = 7 * 24 * 3600
    assert before + week - 2 <= created <= time.time() + week + 1
    url = alice.location(response)
    patched = alice.patch(url, 0, b"x" * 10)
    assert parsedate_to_datetime(patched.headers["Upload-Expires"]).timestamp() >= created
    assert "Upload-Expires" in alice.head(url).headers


def test_expired_upload_is_410_then_cleaned_up(make_server, redis_proc, tmp_path: Path) -> None:
    server = make_server("--janitor-interval", "0")
    alice = TusTestClient(server.files_url, TOKENS["alice"])
    done = alice.upload(b"finished before expiry\n", "kept.txt")
    url = alice.create_url(1000, "abandoned.bin")
    assert alice.patch(url, 0, b"a" * 100).status_code == 204
    partial = server.data_dir / "uploads" / (url.rsplit("/", 1)[1] + ".part")
    assert partial.exists()
    with redis_proc.client() as client:
        fast_forward_expiry(client, upload_id_of(url))
    assert_refused(alice.head(url), 410)
    assert_refused(alice.patch(url, 100, b"b"), 410)
    cleanup = subprocess.run(
        [sys.executable, "-m", "tus_staging.cli", "cleanup",
         "--data-dir", str(server.data_dir), "--redis-url", redis_proc.url],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert cleanup.returncode == 0, cleanup.stderr
    assert "removed 1 expired upload" in cleanup.stdout
    assert not partial.exists()
    assert_refused(alice.head(url), 404)
    # Completed files in staging are never touched, and their HEAD still answers.
    assert staged(server, "alice", "kept.txt").read_bytes() == b"finished before expiry\n"
    assert alice.offset(done) == len(b"finished before expiry\n")


def test_janitor_loop_removes_expired_uploads(make_server) -> None:
    server = make_server("--expire-after", "1", "--janitor-interval", "0.5")
    alice = TusTestClient(server.files_url, TOKENS["alice"])
    url = alice.create_url(1000, "soon-gone.bin")
    partial = server.data_dir / "uploads" / (url.rsplit("/", 1)[1] + ".part")
    deadline = time.monotonic() + 20
    while partial.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not partial.exists()
    assert_refused(alice.head(url), 404)


# --- concatenation ----------------------------------------------------------------------


def test_concatenation_of_finished_partials(server: ServerProcess, alice: TusTestClient) -> None:
    pieces = [b"line one\n" * 5000, os.urandom(1_000_000).hex().encode(), b"tail\n"]
    partials = [alice.create_partial(piece) for piece in pieces]
    # Partials are not staged on their own.
    assert not (server.data_dir / "staging" / "alice" / "joined").exists()
    # Parts may be given as absolute URLs or as paths.
    parts = [partials[0], *(p.removeprefix(server.url) for p in partials[1:])]
    response = alice.create_final(parts, "whole.txt", destPath="joined")
    assert response.status_code == 201, response.text
    final = alice.location(response)
    whole = b"".join(pieces)
    assert staged(server, "alice", "joined/whole.txt").read_bytes() == whole
    meta = sidecar(server, "alice", "joined/whole.txt")
    assert meta["md5"] == hashlib.md5(whole).hexdigest()
    assert meta["lineCount"] == str(whole.count(b"\n"))
    assert meta["isText"] is True
    head = alice.head(final)
    assert head.headers["Upload-Concat"] == "final;" + " ".join(parts)
    assert head.headers["Upload-Offset"] == head.headers["Upload-Length"] == str(len(whole))
    assert_refused(alice.patch(final, len(whole), b"x"), 403)
    # The partials' bytes live in the final now: they are gone, and their files with them.
    for partial in partials:
        assert_refused(alice.head(partial), 404)
    assert not list((server.data_dir / "uploads").iterdir())


def test_a_partial_feeds_exactly_one_final(make_server) -> None:
    """One small upload cannot be staged many times (nor fill the disk) through finals."""
    server = make_server("--max-size", "150000")
    alice = TusTestClient(server.files_url, TOKENS["alice"])
    piece = os.urandom(100_000)
    unfinished = alice.create_partial(piece, send=False)
    assert_refused(
        alice.create_final([unfinished, unfinished], "twice.bin", destPath="joined"), 400
    )
    first = alice.create_final([unfinished], "first.bin", destPath="joined")
    assert first.status_code == 201, first.text
    second = alice.create_final([unfinished], "second.bin", destPath="joined")
    assert_refused(second, 409)
    assert "belongs to final upload" in second.text
    # A final's total counts against --max-size like any upload's length.
    other = alice.create_partial(piece)
    assert_refused(
        alice.create_final([other, alice.create_partial(piece)], "big.bin", destPath="joined"), 413
    )
    assert alice.patch(unfinished, 0, piece).status_code == 204
    assert staged(server, "alice", "joined/first.bin").read_bytes() == piece
    assert not staged(server, "alice", "joined/second.bin").exists()


def test_final_before_partials_finish(server: ServerProcess, alice: TusTestClient) -> None:
    pieces = [os.urandom(700_000), os.urandom(300_000)]
    partials = [alice.create_partial(piece, send=False) for piece in pieces]
    response = alice.create_final(partials, "later.bin", destPath="joined")
    assert response.status_code == 201
    final = alice.location(response)
    head = alice.head(final)
    assert "Upload-Offset" not in head.headers  # not concatenated yet
    assert head.headers["Upload-Length"] == "1000000"
    assert alice.patch(partials[1], 0, pieces[1]).status_code == 204
    assert not staged(server, "alice", "joined/later.bin").exists()
    assert alice.patch(partials[0], 0, pieces[0]).status_code == 204
    assert staged(server, "alice", "joined/later.bin").read_bytes() == pieces[0] + pieces[1]
    assert alice.head(final).headers["Upload-Offset"] == "1000000"


def test_concatenation_errors(
    server: ServerProcess, alice: TusTestClient, bob: TusTestClient
) -> None:
    mine = alice.create_partial(b"abc")
    bobs = bob.create_partial(b"def")
    plain = alice.create_url(3, "plain.bin")
    assert_refused(alice.create_final([mine, bobs], "x.bin", destPath="joined"), 404)
    assert_refused(alice.create_final([mine, plain], "x.bin", destPath="joined"), 400)
    assert_refused(
        alice.create_final([mine, "https://elsewhere.example/up/1"], "x.bin", destPath="joined"),
        400,
    )
    headers = alice.headers(Upload_Concat="final;")
    assert_refused(requests.post(alice.files_url, headers=headers), 400)
    headers = alice.headers(Upload_Concat="sideways", Upload_Length="3")
    assert_refused(requests.post(alice.files_url, headers=headers), 400)


# --- CORS and proxies -------------------------------------------------------------------

ORIGIN = "https://app.example.org"


def test_cors_preflight_and_exposed_headers(make_server) -> None:
    server = make_server("--cors-origins", "*")  # any origin: allowed with authentication
    alice = TusTestClient(server.files_url, TOKENS["alice"])
    preflight = requests.options(
        server.files_url,
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, tus-resumable, upload-length",
        },
    )
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "*"
    allowed = preflight.headers["Access-Control-Allow-Headers"].lower()
    for name in ("authorization", "tus-resumable", "upload-length", "upload-offset",
                 "upload-metadata", "upload-concat", "upload-checksum"):  # fmt: skip
        assert name in allowed
    assert "PATCH" in preflight.headers["Access-Control-Allow-Methods"]
    assert "Access-Control-Allow-Credentials" not in preflight.headers
    response = alice.create(10, "cors.bin")
    response = requests.post(
        alice.files_url,
        headers={**alice.headers(Upload_Length="10",
                                 Upload_Metadata=encode_metadata(filename="c.bin")),
                 "Origin": ORIGIN},
    )  # fmt: skip
    exposed = response.headers["Access-Control-Expose-Headers"]
    for name in ("Location", "Upload-Offset", "Upload-Length", "Upload-Expires", "Tus-Resumable"):
        assert name in exposed
    # Errors carry CORS headers too, so the browser script can read the reason.
    refused = requests.head(
        server.files_url + "0" * 32, headers={**alice.headers(), "Origin": ORIGIN}
    )
    assert refused.status_code == 404
    assert refused.headers["Access-Control-Allow-Origin"] == "*"


def test_cors_explicit_origins_and_credentials(make_server) -> None:
    server = make_server("--cors-origins", f"{ORIGIN},https://other.example", "--cors-credentials")
    ask = {"Access-Control-Request-Method": "PATCH"}
    allowed = requests.options(server.files_url, headers={"Origin": ORIGIN, **ask})
    assert allowed.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert allowed.headers["Access-Control-Allow-Credentials"] == "true"
    assert "Origin" in allowed.headers["Vary"]
    denied = requests.options(server.files_url, headers={"Origin": "https://evil.example", **ask})
    assert "Access-Control-Allow-Origin" not in denied.headers


def test_cors_credentials_with_any_origin_refused_at_start(tmp_path: Path, tokens_file) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tus_staging.cli", "serve", "--data-dir", str(tmp_path / "d"),
         "--tokens-file", str(tokens_file), "--cors-credentials", "--redis-url", "redis://x"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode != 0
    assert "--cors-origins" in result.stderr


def test_location_is_relative_by_default(server: ServerProcess, alice: TusTestClient) -> None:
    response = alice.create(
        5,
        "rel.bin",
    )
    assert response.headers["Location"].startswith("/files/")
    spoofed = requests.post(
        alice.files_url,
        headers={**alice.headers(Upload_Length="5", Upload_Metadata=encode_metadata(filename="r")),
                 "X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https"},
    )  # fmt: skip
    assert spoofed.headers["Location"].startswith("/files/")


def test_location_behind_proxy(make_server) -> None:
    server = make_server("--behind-proxy")
    alice = TusTestClient(server.files_url, TOKENS["alice"])
    meta = encode_metadata(filename="p.bin")
    via_x = requests.post(alice.files_url, headers={
        **alice.headers(Upload_Length="5", Upload_Metadata=meta),
        "X-Forwarded-Proto": "https", "X-Forwarded-Host": "uploads.example.org",
    })  # fmt: skip
    assert via_x.headers["Location"].startswith("https://uploads.example.org/files/")
    via_rfc = requests.post(alice.files_url, headers={
        **alice.headers(Upload_Length="5", Upload_Metadata=meta),
        "Forwarded": 'for=1.2.3.4;proto=https;host="data.example.net:8443"',
    })  # fmt: skip
    assert via_rfc.headers["Location"].startswith("https://data.example.net:8443/files/")
    direct = alice.create(5, "d.bin")
    assert direct.headers["Location"].startswith(f"{server.url}/files/")
