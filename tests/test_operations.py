"""Metrics (under several workers), the events stream, HTTP hooks and the request log."""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import threading
import time
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from store import md5_lanes
from store.keys import EVENTS_STREAM_KEY

from .checks import sidecar
from .servers import TOKENS, JsonHandler, RedisProcess, ServerProcess, metric_values
from .tus_client import TusTestClient, encode_metadata


def scrape(server: ServerProcess) -> dict[str, float]:
    return metric_values(server.url)


def test_metrics_count_right_under_two_workers(make_server) -> None:
    server = make_server("--workers", "2")
    alice = TusTestClient(server.files_url, TOKENS["alice"])
    for index in range(6):
        alice.upload(b"x" * (1000 + index), f"m{index}.bin", chunk=400)
    open_url = alice.create_url(5000, "open.bin")
    assert alice.patch(open_url, 0, b"y" * 100).status_code == 204
    gone = alice.create_url(10, "gone.bin")
    assert alice.delete(gone).status_code == 204
    # Whichever worker answers, the figures are the sum over both.
    scrapes = [scrape(server) for _ in range(6)]
    for values in scrapes:
        assert values['tus_staging_uploads_total{event="created"}'] == 8
        assert values['tus_staging_uploads_total{event="finished"}'] == 6
        assert values['tus_staging_uploads_total{event="terminated"}'] == 1
        assert values["tus_staging_open_uploads"] == 1
        assert values["tus_staging_bytes_received_total"] == sum(1000 + i for i in range(6)) + 100
        assert values["tus_staging_finalize_seconds_count"] == 6
        posts = 'tus_staging_requests_total{method="POST",route="/files/",status="201"}'
        assert values[posts] == 8
        patches = [
            v
            for k, v in values.items()
            if k.startswith(
                'tus_staging_requests_total{method="PATCH",route="/files/{upload_id}",status="204"'
            )
        ]
        assert sum(patches) == 3 * 6 + 1
    pids = {requests.get(f"{server.url}/healthz").json()["pid"] for _ in range(30)}
    assert len(pids) == 2  # both workers answered


def test_events_stream(
    server: ServerProcess, alice: TusTestClient, redis_proc: RedisProcess
) -> None:
    done = alice.upload(b"payload\n" * 100, "evented.txt", destPath="ev")
    dropped = alice.create_url(50, "dropped.bin")
    alice.delete(dropped)
    with redis_proc.client() as client:
        entries = client.xrange(EVENTS_STREAM_KEY)
    events = [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in entries]
    kinds = [(e["event"], e["uploadId"]) for e in events]
    done_id, dropped_id = done.rsplit("/", 1)[1], dropped.rsplit("/", 1)[1]
    assert kinds == [
        ("created", done_id), ("finished", done_id), ("created", dropped_id),
        ("terminated", dropped_id),
    ]  # fmt: skip
    finished = events[1]
    assert finished["user"] == "alice"
    assert finished["path"] == "alice/ev/evented.txt"
    assert finished["size"] == "800"
    assert (
        finished["md5"]
        == json.loads((server.data_dir / "metadata" / "alice" / "ev" / "evented.txt").read_text())[
            "md5"
        ]
    )


class HookRecorder:
    """A real small HTTP hook endpoint: refuses files named 'forbidden*', fails the first
    post-finish call, records everything."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []
        self.finished = threading.Event()
        recorder = self

        class Handler(JsonHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                recorder.calls.append((self.path, body))
                if self.path == "/pre-create" and body["filename"].startswith("forbidden"):
                    self.answer(403, {"message": "files named forbidden* are not accepted"})
                elif self.path == "/post-finish" and len(recorder.post_finish_calls()) == 1:
                    self.answer(500, {"message": "try again"})
                else:
                    if self.path == "/post-finish":
                        recorder.finished.set()
                    self.answer(200, {})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def post_finish_calls(self) -> list[dict]:
        return [body for path, body in self.calls if path == "/post-finish"]


@pytest.fixture
def hooks() -> Iterator[HookRecorder]:
    recorder = HookRecorder()
    yield recorder
    recorder.server.shutdown()


def test_pre_create_hook_refuses_by_filename(make_server, hooks: HookRecorder) -> None:
    server = make_server(
        "--hook-pre-create", hooks.url("/pre-create"),
        "--hook-post-finish", hooks.url("/post-finish"),
    )  # fmt: skip
    alice = TusTestClient(server.files_url, TOKENS["alice"])
    refused = alice.create(10, "forbidden-data.bin")
    assert refused.status_code == 403
    assert refused.text.strip() == "files named forbidden* are not accepted"
    assert not list((server.data_dir / "uploads").iterdir())
    url = alice.upload(b"fine", "fine.txt", destPath="d")
    pre = [body for path, body in hooks.calls if path == "/pre-create"]
    assert pre[-1]["user"] == "alice"
    assert pre[-1]["destination"] == "d/fine.txt"
    assert pre[-1]["length"] == 4
    assert pre[-1]["metadata"] == {"filename": "fine.txt", "destPath": "d"}
    # post-finish: the first call fails (500), the retry delivers it.
    assert hooks.finished.wait(30)
    delivered = hooks.post_finish_calls()
    assert len(delivered) == 2
    assert delivered[-1]["uploadId"] == url.rsplit("/", 1)[1]
    assert delivered[-1]["event"] == "finished"
    assert delivered[-1]["path"] == "alice/d/fine.txt"


def test_unreachable_pre_create_hook_is_503(make_server) -> None:
    server = make_server("--hook-pre-create", "http://127.0.0.1:9/nothing-listens-here")
    alice = TusTestClient(server.files_url, TOKENS["alice"])
    response = alice.create(10, "x.bin")
    assert response.status_code == 503
    assert "Retry-After" in response.headers


def test_json_request_log(make_server, tmp_path: Path) -> None:
    server = make_server("--log-format", "json")
    alice = TusTestClient(server.files_url, TOKENS["alice"])
    url = alice.create_url(20, "logged.bin")
    response = alice.patch(url, 0, b"z" * 20, X_Request_ID="trace-42")
    assert response.headers["X-Request-ID"] == "trace-42"
    lines = [json.loads(line) for line in server.log_path.read_text().splitlines()
             if line.startswith("{")]  # fmt: skip
    access = [line for line in lines if line.get("logger") == "tus_staging.access"]
    patch = next(line for line in access if line["request_id"] == "trace-42")
    assert patch["method"] == "PATCH"
    assert patch["status"] == 204
    assert patch["user"] == "alice"
    assert patch["upload_id"] == url.rsplit("/", 1)[1]
    assert patch["bytes"] == 20
    assert patch["duration_ms"] >= 0
    post = next(line for line in access if line["method"] == "POST")
    assert re.fullmatch(r"[0-9a-f]{16}", post["request_id"])
    assert post["upload_id"] == url.rsplit("/", 1)[1]


def test_metadata_header_in_hook_payload_is_decoded(make_server, hooks: HookRecorder) -> None:
    server = make_server("--hook-pre-create", hooks.url("/pre-create"))
    headers = {
        "Tus-Resumable": "1.0.0", "Authorization": TOKENS["bob"], "Upload-Length": "3",
        "Upload-Metadata": encode_metadata(filename="ü.txt", note="é"),
    }  # fmt: skip
    assert requests.post(server.files_url, headers=headers).status_code == 201
    body = hooks.calls[-1][1]
    assert body["metadata"] == {"filename": "ü.txt", "note": "é"}
    assert body["user"] == "bob"


def uploads_at_once(server: ServerProcess, count: int, size: int) -> None:
    """``count`` uploads of ``size`` random bytes in one PATCH each, all at the same time;
    each staged with the right md5."""
    alice = TusTestClient(server.files_url, TOKENS["alice"])
    bodies = {f"at-once-{index}.bin": os.urandom(size) for index in range(count)}
    threads = [
        threading.Thread(target=alice.upload, args=(body, name), kwargs={"chunk": size})
        for name, body in bodies.items()
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for name, body in bodies.items():
        assert sidecar(server, "alice", name)["md5"] == hashlib.md5(body).hexdigest()


def md5_updates(server: ServerProcess) -> dict[str, float]:
    values = scrape(server)
    return {
        path: values.get(f'tus_staging_md5_updates_total{{path="{path}"}}', 0.0)
        for path in ("lanes", "inline")
    }


@pytest.mark.skipif(not md5_lanes.lanes(), reason="md5 lanes not built, or no AVX2 here")
def test_md5_lanes_hash_concurrent_uploads_unless_switched_off(make_server, tmp_path) -> None:
    server = make_server()
    started = time.monotonic()
    uploads_at_once(server, 8, 24 * 1024 * 1024)
    elapsed = time.monotonic() - started
    counted = md5_updates(server)
    # The engine's waits for company, in seconds: a fraction of the uploads' time.
    assert 0 <= scrape(server)["tus_staging_md5_held_seconds_total"] < elapsed
    # One update per block: 1 MiB and up, plus at most the socket chunks that filled it.
    assert counted["lanes"] + counted["inline"] >= 8 * 8
    assert f"md5: md5 lanes engine, {md5_lanes.lanes()} lanes" in server.log_path.read_text()

    off = make_server(data_dir=tmp_path / "off", env={"TUS_STAGING_NO_MD5_LANES": "1"})
    uploads_at_once(off, 8, 4 * 1024 * 1024)
    assert md5_updates(off) == {"lanes": 0.0, "inline": 0.0}  # libcrypto did all of it
    assert "md5: libcrypto (md5 lanes off)" in off.log_path.read_text()


def test_writers_straight_to_disk_and_through_the_cache_take_turns_on_an_upload(
    make_server,
) -> None:
    # Two servers on one Redis and data dir, one writing partial files with O_DIRECT and
    # one through the page cache, take uneven PATCHes of one upload in turns: every
    # resume starts off a 4 KiB boundary, from bytes the other kind of writer left.
    direct = make_server()
    cached = make_server(env={"TUS_STAGING_NO_DIRECT_IO": "1"})
    assert "partial files: straight to the disk (O_DIRECT" in direct.log_path.read_text()
    assert "partial files: through the page cache" in cached.log_path.read_text()
    rng = random.Random(11)
    data = b"".join(rng.randbytes(rng.randrange(1, 200)) + b"\n" for _ in range(60_000))
    url = TusTestClient(direct.files_url, TOKENS["alice"]).create_url(len(data), "turns.txt")
    path = urlsplit(url).path
    offset, turn = 0, 0
    while offset < len(data):
        server = (direct, cached)[turn % 2]
        size = rng.choice([1, 4095, 4097, 65_537, 1024 * 1024 + 333, 3 * 1024 * 1024])
        client = TusTestClient(server.files_url, TOKENS["alice"])
        response = client.patch(server.url + path, offset, data[offset : offset + size])
        assert response.status_code == 204, response.text
        offset, turn = int(response.headers["Upload-Offset"]), turn + 1
    staged = sidecar(direct, "alice", "turns.txt")
    assert staged["md5"] == hashlib.md5(data).hexdigest()
    assert staged["lineCount"] == str(data.count(b"\n"))
    assert (direct.data_dir / "staging" / "alice" / "turns.txt").read_bytes() == data
