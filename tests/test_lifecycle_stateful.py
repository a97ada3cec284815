"""The upload lifecycle as a hypothesis state machine, against the real server and real Redis.

The model holds, per upload, its source bytes and the offset the server must have
committed. Rules: create (length known or deferred), PATCH the next chunk at the right
offset, PATCH at a wrong offset (409, nothing changes), vanish mid-body (a raw socket
that sends k bytes and closes: the committed offset lands in [old, old + k] and the model
adopts it), restart the server (SIGTERM or SIGKILL), restart Redis, DELETE (then 404).

Invariants after every step: HEAD answers the model's offset and it never went back;
a complete upload's staged file is its source and the sidecar md5 is hashlib's.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import requests
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from .servers import (
    TOKENS,
    InProcessServer,
    RedisProcess,
    ServerProcess,
    open_raw_patch,
    wait_delivered,
    wait_until,
)
from .tus_client import TusTestClient

USER = "alice"
MAX_LIVE_UPLOADS = 3
NAMES = itertools.count()  # uploads of every example share the server: unique names


@dataclass
class Upload:
    name: str
    url: str
    data: bytes
    declared: bool  # the server knows the length (not deferred, or declared since)
    offset: int = 0  # what the server must have committed
    highest_seen: int = 0

    @property
    def remaining(self) -> int:
        return len(self.data) - self.offset

    @property
    def complete(self) -> bool:
        return self.declared and self.offset == len(self.data)


@dataclass
class Processes:
    server: ServerProcess | InProcessServer
    redis: RedisProcess


class UploadLifecycle(RuleBasedStateMachine):
    processes: ClassVar[Processes]

    def __init__(self) -> None:
        super().__init__()
        self.client = TusTestClient(self.processes.server.files_url, TOKENS[USER])
        self.uploads: list[Upload] = []
        self.deleted: list[str] = []

    # -- helpers -------------------------------------------------------------------------

    def pick(self, index: int, wanted: Callable[[Upload], bool]) -> Upload | None:
        candidates = [u for u in self.uploads if wanted(u)]
        return candidates[index % len(candidates)] if candidates else None

    def head(self, url: str) -> requests.Response:
        return self.client.head(url)

    def staging(self, root: str, name: str) -> Path:
        return self.processes.server.data_dir / root / USER / name

    # -- rules ---------------------------------------------------------------------------

    @precondition(lambda self: len(self.uploads) < MAX_LIVE_UPLOADS)
    @rule(size=st.integers(0, 300_000), defer=st.booleans(), seed=st.integers(0, 2**32))
    def create(self, size: int, defer: bool, seed: int) -> None:
        data = random.Random(seed).randbytes(size)
        name = f"u{next(NAMES)}.bin"
        response = self.client.create(None if defer else size, name)
        assert response.status_code == 201, response.text
        self.uploads.append(Upload(name, self.client.location(response), data, not defer))

    @precondition(lambda self: any(not u.complete for u in self.uploads))
    @rule(index=st.integers(0, 100), fraction=st.floats(0, 1), declare=st.booleans())
    def patch_next_chunk(self, index: int, fraction: float, declare: bool) -> None:
        upload = self.pick(index, lambda u: not u.complete)
        assert upload is not None
        size = round(upload.remaining * fraction)
        extra = {} if upload.declared or not declare else {"Upload_Length": str(len(upload.data))}
        body = upload.data[upload.offset : upload.offset + size]
        response = self.client.patch(upload.url, upload.offset, body, **extra)
        assert response.status_code == 204, response.text
        upload.offset += size
        upload.declared = upload.declared or bool(extra)
        assert int(response.headers["Upload-Offset"]) == upload.offset

    @precondition(lambda self: bool(self.uploads))
    @rule(index=st.integers(0, 100), delta=st.integers(1, 400_000), below=st.booleans())
    def patch_at_wrong_offset(self, index: int, delta: int, below: bool) -> None:
        upload = self.pick(index, lambda u: True)
        assert upload is not None
        wrong = upload.offset - delta if below and delta <= upload.offset else upload.offset + delta
        body = upload.data[:10] or b"x"
        response = self.client.patch(upload.url, wrong, body)
        assert response.status_code == 409, response.text

    @precondition(lambda self: any(u.remaining > 0 and not u.complete for u in self.uploads))
    @rule(index=st.integers(0, 100), fraction=st.floats(0, 1, exclude_max=True))
    def vanish_mid_body(self, index: int, fraction: float) -> None:
        upload = self.pick(index, lambda u: u.remaining > 0 and not u.complete)
        assert upload is not None
        sent = int(upload.remaining * fraction)  # < remaining: the body never ends
        request_id = f"vanish-{next(NAMES)}"
        sock = open_raw_patch(upload.url, TOKENS[USER], upload.offset, upload.remaining, request_id)
        sock.sendall(upload.data[upload.offset : upload.offset + sent])
        wait_delivered(sock)
        sock.close()
        # Once the request is over, all it received is committed (before that, its handler
        # may not even have taken the upload's lock, and a HEAD would not wait for it).
        server = self.processes.server
        wait_until(lambda: server.logged(request_id), 30, "the vanished request's end")
        response = self.head(upload.url)
        assert response.status_code == 200, response.text
        committed = int(response.headers["Upload-Offset"])
        assert upload.offset <= committed <= upload.offset + sent
        upload.offset = committed

    @precondition(lambda self: bool(self.uploads))
    @rule(index=st.integers(0, 100))
    def delete(self, index: int) -> None:
        upload = self.pick(index, lambda u: True)
        assert upload is not None
        response = self.client.delete(upload.url)
        assert response.status_code == 204, response.text
        self.uploads.remove(upload)
        self.deleted.append(upload.url)

    # -- invariants ----------------------------------------------------------------------

    @invariant()
    def head_reports_the_committed_offset(self) -> None:
        for upload in self.uploads:
            response = self.head(upload.url)
            assert response.status_code == 200, response.text
            offset = int(response.headers["Upload-Offset"])
            assert offset >= upload.highest_seen, "the committed offset went back"
            assert offset == upload.offset
            upload.highest_seen = offset
            if upload.declared:
                assert response.headers["Upload-Length"] == str(len(upload.data))
            else:
                assert response.headers["Upload-Defer-Length"] == "1"

    @invariant()
    def complete_uploads_are_staged_with_their_md5(self) -> None:
        for upload in self.uploads:
            if upload.complete:
                assert self.staging("staging", upload.name).read_bytes() == upload.data
                sidecar = json.loads(self.staging("metadata", upload.name).read_text())
                assert sidecar["md5"] == hashlib.md5(upload.data).hexdigest()
                assert sidecar["size"] == len(upload.data)

    @invariant()
    def deleted_uploads_are_gone(self) -> None:
        for url in self.deleted:
            assert self.head(url).status_code == 404


class UploadLifecycleWithFaults(UploadLifecycle):
    """The same life, with the server killed or stopped, and Redis restarted, between
    steps: the server runs as a process of its own."""

    # One rule for all restarts, so that they do not crowd out the other steps.
    @precondition(lambda self: bool(self.uploads))
    @rule(what=st.sampled_from(["server-sigterm", "server-sigkill", "redis"]))
    def restart(self, what: str) -> None:
        if what == "redis":
            self.processes.redis.restart()
            return
        sig = signal.SIGTERM if what == "server-sigterm" else signal.SIGKILL
        self.processes.server.stop(sig)
        self.processes.server.start()
        self.client = TusTestClient(self.processes.server.files_url, TOKENS[USER])


def run(machine: type[UploadLifecycle], examples: int, steps: int) -> None:
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=examples,
            stateful_step_count=steps,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )


def test_upload_lifecycle_state_machine(
    redis_proc: RedisProcess, tokens_file: Path, tmp_path: Path
) -> None:
    """Many lives against the real app in this process (milliseconds a step)."""
    server = InProcessServer(tmp_path / "data", redis_proc.url, tokens_file, ["--lock-wait", "5"])
    server.start()
    try:
        UploadLifecycle.processes = Processes(server, redis_proc)
        run(UploadLifecycle, examples=50, steps=20)
    finally:
        server.stop()


def test_upload_lifecycle_state_machine_with_faults(make_server, redis_proc: RedisProcess) -> None:
    """Fewer lives, with restarts: each costs a process start."""
    UploadLifecycleWithFaults.processes = Processes(make_server("--lock-wait", "5"), redis_proc)
    run(UploadLifecycleWithFaults, examples=8, steps=15)
