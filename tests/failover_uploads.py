"""Uploads that go on through a Redis failover, and what they must see: every PATCH to the
other server than the last, a 503 (with Retry-After) or a 423 now and then while Redis
fails over, never a 500, never an answer after more than ~30 s, and never an offset below
one already told (by a 204 or a HEAD)."""

from __future__ import annotations

import functools
import hashlib
import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import requests

from .servers import TOKENS, ServerProcess
from .tus_client import TusTestClient, upload_id_of

USER = "alice"
CHUNK = 256 * 1024
LONGEST_ANSWER = 30.0  # seconds; past it a request counts as hung
PAUSE = 0.1  # seconds between retries (a client may come back before Retry-After)


@dataclass
class Upload:
    """One upload and everything its client was told."""

    name: str
    data: bytes
    url: str = ""
    acknowledged: int = 0  # the highest offset a 204 or a HEAD answered
    statuses: list[int] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    longest: float = 0.0
    done: bool = False


class FailoverClient:
    """Drives one upload through ``servers`` in turn, retrying whatever a failover throws."""

    def __init__(
        self, servers: list[ServerProcess], upload: Upload, turn: int, gate: threading.Barrier
    ):
        self.servers = servers
        self.upload = upload
        self.turn = turn
        self.gate = gate  # every upload waits there once, a quarter in
        self.gated = False
        self.client = TusTestClient(servers[0].files_url, TOKENS[USER])

    def next_url(self) -> str:
        self.turn += 1
        return self.servers[self.turn % 2].files_url + upload_id_of(self.upload.url)

    def call(self, send: Callable[[], requests.Response]) -> requests.Response | None:
        started = time.monotonic()
        try:
            response = send()
        except requests.RequestException as error:
            self.upload.problems.append(f"no answer: {error!r}")
            return None
        took = time.monotonic() - started
        self.upload.longest = max(self.upload.longest, took)
        self.upload.statuses.append(response.status_code)
        if response.status_code >= 500 and response.status_code != 503:
            self.upload.problems.append(f"{response.status_code}: {response.text.strip()}")
        if response.status_code == 503 and not response.headers.get("Retry-After", "").isdigit():
            self.upload.problems.append(f"503 without Retry-After: {response.text.strip()}")
        return response

    def told(self, response: requests.Response) -> int:
        """The offset a 204 or a HEAD answered, checked against what was told before."""
        offset = int(response.headers["Upload-Offset"])
        if offset < self.upload.acknowledged:
            self.upload.problems.append(
                f"offset went back from {self.upload.acknowledged} to {offset} "
                f"({response.request.method} answered {response.status_code})"
            )
        self.upload.acknowledged = max(self.upload.acknowledged, offset)
        return offset

    def create(self, deadline: float) -> None:
        while not self.upload.url and time.monotonic() < deadline:
            self.client.files_url = self.servers[self.turn % 2].files_url
            self.turn += 1
            response = self.call(
                lambda: self.client.create(len(self.upload.data), self.upload.name)
            )
            if response is not None and response.status_code == 201:
                self.upload.url = self.client.location(response)
            else:
                time.sleep(PAUSE)

    def offset(self) -> int | None:
        response = self.call(lambda: self.client.head(self.next_url()))
        if response is None or response.status_code != 200:
            time.sleep(PAUSE)
            return None
        return self.told(response)

    def patch(self, offset: int) -> requests.Response:
        body = self.upload.data[offset : offset + CHUNK]
        return self.client.patch(self.next_url(), offset, body)

    def pass_gate(self) -> None:
        if not self.gated:
            self.gated = True
            self.gate.wait()

    def run(self, deadline: float) -> None:
        data = self.upload.data
        self.create(deadline)
        offset: int | None = 0
        while time.monotonic() < deadline:
            if offset is None:
                offset = self.offset()
                continue
            response = self.call(functools.partial(self.patch, offset))
            if response is not None and response.status_code == 204:
                offset = self.told(response)
                if offset == len(data):
                    self.upload.done = True
                    return
                if offset >= len(data) // 4:
                    self.pass_gate()
                continue
            time.sleep(PAUSE)
            offset = None  # 503, 423, 409 or no answer: ask again where it stands
        self.upload.problems.append(f"not finished in time: {self.upload.acknowledged}")


def run_through_a_failover(
    servers: list[ServerProcess],
    uploads: list[Upload],
    kill_master: Callable[[list[Upload]], None],
    timeout: float = 120.0,
) -> None:
    """Run ``uploads`` concurrently; once every one is a quarter in (they wait for each
    other there) and PATCHes are streaming again, call ``kill_master``; wait for them all,
    watching the servers' operational endpoints meanwhile."""
    deadline = time.monotonic() + timeout
    gate = threading.Barrier(len(uploads) + 1, timeout=timeout)
    clients = [FailoverClient(servers, upload, turn, gate) for turn, upload in enumerate(uploads)]
    threads = [threading.Thread(target=client.run, args=(deadline,)) for client in clients]
    for thread in threads:
        thread.start()
    try:
        gate.wait()
        told = sum(upload.acknowledged for upload in uploads)
        while sum(upload.acknowledged for upload in uploads) == told:
            assert time.monotonic() < deadline, "the uploads did not go on"
            time.sleep(0.001)
        assert not any(upload.done for upload in uploads)
        kill_master(uploads)
        operations = watch_operations(servers, threads)
    finally:
        gate.abort()  # (a no-op once passed; frees the clients if this side failed)
        for thread in threads:
            thread.join(timeout)
    assert operations <= {200, 503}, f"/healthz and /metrics answered {operations}"


def watch_operations(servers: list[ServerProcess], threads: list[threading.Thread]) -> set[int]:
    """What /healthz and /metrics answer until the uploads are done (200 or 503, never 500)."""
    answers = set()
    while any(thread.is_alive() for thread in threads):
        for server in servers:
            for path in ("/healthz", "/metrics"):
                answers.add(requests.get(server.url + path, timeout=30).status_code)
        time.sleep(0.05)
    return answers


def random_uploads(count: int, size: int, seed: int) -> list[Upload]:
    rng = random.Random(seed)
    return [
        Upload(f"failover-{index}.bin", rng.randbytes(size + index * 4099))
        for index in range(count)
    ]


def check_every_upload(data_dir: Path, uploads: list[Upload]) -> None:
    # The kill was felt (requests met Redis away), and got through.
    assert any(503 in upload.statuses for upload in uploads)
    for upload in uploads:
        assert upload.problems == [], (upload.name, upload.problems)
        assert upload.done, upload.name
        assert upload.longest < LONGEST_ANSWER, (upload.name, upload.longest)
        staged = data_dir / "staging" / USER / upload.name
        assert hashlib.md5(staged.read_bytes()).digest() == hashlib.md5(upload.data).digest()
        sidecar = json.loads((data_dir / "metadata" / USER / upload.name).read_text())
        assert sidecar["md5"] == hashlib.md5(upload.data).hexdigest()
        assert sidecar["size"] == len(upload.data)


def a_new_upload_works(servers: list[ServerProcess], data_dir: Path) -> None:
    """After the failover, through both servers (created on one, finished on the other)."""
    data = random.Random(99).randbytes(3 * CHUNK + 5)
    client = TusTestClient(servers[0].files_url, TOKENS[USER])
    url = client.create_url(len(data), "after-failover.bin")
    assert client.patch(url, 0, data[:CHUNK]).status_code == 204
    other = servers[1].files_url + upload_id_of(url)
    response = client.patch(other, CHUNK, data[CHUNK:])
    assert response.status_code == 204, response.text
    staged = data_dir / "staging" / USER / "after-failover.bin"
    assert staged.read_bytes() == data
