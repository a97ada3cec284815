"""Crash recovery: the server dies (kill -9, or exits at a named crash point) and comes back.

* kill -9 while one long PATCH streams, at seeded random points, restart, HEAD, resume:
  the staged file is byte-identical to the source, no acknowledged byte is lost, and
  checkpoints bound what has to be re-sent;
* ``TUS_STAGING_CRASH_AT`` at each crash point of the commit and of finalize: restarted
  without it, the next HEAD, the next PATCH or the janitor completes the interrupted
  finalize exactly once.

A dead process's locks stay in Redis until their TTL runs out; most tests fast-forward
that (``fast_forward_lock_expiry``) so that they test data integrity;
``test_head_after_kill_waits_out_the_dead_holders_lock`` goes through the real wait, and
``test_head_after_kill_is_not_blocked_by_the_dead_holders_lock`` shows what it costs.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
import redis.asyncio
import requests

from store.janitor import janitor_pass
from store.keys import FINALIZING_INDEX_KEY, upload_key
from store.layout import DataLayout
from store.uploads import StoreSettings, Uploads

from .conftest import md5_of
from .servers import (
    TOKENS,
    RedisProcess,
    ServerProcess,
    fast_forward_lock_expiry,
    open_raw_patch,
    read_response,
    wait_delivered,
    wait_until,
)
from .tus_client import TusTestClient, upload_id_of

MiB = 1 << 20
CHECKPOINT = 8 * MiB
CRASH_EXIT_STATUS = 137
USER = "alice"

# -- a positional generated source: any byte range can be produced again -------------------


class GeneratedSource:
    """``size`` reproducible bytes: block ``i`` is one seeded random MiB with ``i`` stamped over
    its first 8 bytes, so every MiB differs, nothing is stored, any range can be re-sent."""

    def __init__(self, size: int, seed: int):
        self.size = size
        self._base = random.Random(seed).randbytes(MiB)

    def block(self, index: int) -> bytes:
        return index.to_bytes(8, "big") + self._base[8:]

    def pieces(self, start: int, end: int) -> Iterator[bytes]:
        position = start
        while position < end:
            index, skip = divmod(position, MiB)
            piece = self.block(index)[skip : min(MiB, skip + end - position)]
            yield piece
            position += len(piece)

    def md5(self) -> str:
        digest = hashlib.md5()
        for piece in self.pieces(0, self.size):
            digest.update(piece)
        return digest.hexdigest()


# -- helpers -------------------------------------------------------------------------------


def committed_in_redis(client: redis.Redis, upload_id: str) -> int:
    return int(client.hget(upload_key(upload_id), "offset") or b"-1")


def status_in_redis(client: redis.Redis, upload_id: str) -> str:
    return (client.hget(upload_key(upload_id), "status") or b"").decode()


def files_under(directory: Path) -> set[str]:
    """Every file below ``directory`` (hidden ones included), relative to it."""
    if not directory.exists():
        return set()
    return {str(p.relative_to(directory)) for p in directory.rglob("*") if not p.is_dir()}


def assert_only(data_dir: Path, staged: set[str], upload_dir: Path | None = None) -> None:
    """Staging and metadata hold exactly ``staged`` (user-relative paths), no partial is left."""
    assert files_under(data_dir / "staging" / USER) == staged
    assert files_under(data_dir / "metadata" / USER) == staged
    assert files_under(upload_dir or data_dir / "uploads") == set()


def sidecar_of(data_dir: Path, name: str) -> dict:
    return json.loads((data_dir / "metadata" / USER / name).read_text())


@dataclass
class KillRun:
    size: int
    kills: int
    seconds: float
    resent: int  # bytes sent more than once (sent before a kill, not committed)
    committed_at_kill: list[int]
    points: list[int]


def kill_points(rng: random.Random, size: int, count: int, gap: int = 2 * MiB) -> list[int]:
    """``count`` sorted points in (gap, size - gap), at least ``gap`` apart."""
    while True:
        points = sorted(rng.randrange(gap, size - gap) for _ in range(count))
        if all(b - a >= gap for a, b in itertools.pairwise(points)):
            return points


def upload_with_kills(
    server: ServerProcess,
    redis_proc: RedisProcess,
    source: GeneratedSource,
    points: list[int],
    name: str,
) -> KillRun:
    """One PATCH for the whole rest of the body each time; kill -9 the server once the
    client has sent ``point`` bytes and the server has written them; restart, HEAD, resume."""
    client = TusTestClient(server.files_url, TOKENS[USER])
    started = time.perf_counter()
    url = client.create_url(source.size, name)
    upload_id = upload_id_of(url)
    partial = server.data_dir / "uploads" / f"{upload_id}.part"
    rclient = redis_proc.client()
    offset = resent = 0
    committed_at_kill: list[int] = []
    for point in points:
        assert offset < point
        sock = open_raw_patch(url, TOKENS[USER], offset, source.size - offset)
        for piece in source.pieces(offset, point):
            sock.sendall(piece)
        wait_delivered(sock, timeout=60)
        # HEAD-less progress: the server has written all it received but the unfilled
        # last block (< 1 MiB); that file size is past anything an earlier PATCH left.
        wait_until(
            lambda p=point: partial.stat().st_size > p - MiB, 60, f"partial file past {point}"
        )
        # A checkpoint's fsync + commit overlap the next blocks: give the one in progress a
        # moment (well under the 1 s after which a quiet client's bytes are committed anyway).
        floor = point - (CHECKPOINT + 3 * MiB)
        deadline = time.monotonic() + 0.5
        while committed_in_redis(rclient, upload_id) < floor and time.monotonic() < deadline:
            time.sleep(0.01)
        server.kill()
        sock.close()
        committed = committed_in_redis(rclient, upload_id)
        committed_at_kill.append(committed)
        # Never back, never past what was sent; and a checkpoint every 8 MiB bounds the loss:
        # at most the unfilled block, one block in flight and one checkpoint window.
        assert offset <= committed <= point
        assert committed >= floor, (offset, committed, point)
        fast_forward_lock_expiry(rclient)
        server.start()
        assert client.offset(url) == committed
        resent += point - committed
        offset = committed

    sock = open_raw_patch(url, TOKENS[USER], offset, source.size - offset)
    for piece in source.pieces(offset, source.size):
        sock.sendall(piece)
    status, headers = read_response(sock)
    sock.close()
    assert status == 204, (status, headers)
    assert int(headers["upload-offset"]) == source.size
    seconds = time.perf_counter() - started
    rclient.close()
    return KillRun(source.size, len(points), seconds, resent, committed_at_kill, points)


def check_staged(data_dir: Path, name: str, size: int, md5: str) -> None:
    staged = data_dir / "staging" / USER / name
    assert staged.stat().st_size == size
    assert md5_of(staged) == md5
    sidecar = sidecar_of(data_dir, name)
    assert sidecar["md5"] == md5
    assert sidecar["size"] == size
    assert_only(data_dir, {name})


# -- kill -9 during streaming --------------------------------------------------------------


def test_kill_during_one_long_patch(make_server, redis_proc: RedisProcess) -> None:
    server = make_server("--checkpoint-bytes", "8M")
    source = GeneratedSource(64 * MiB, seed=20240611)
    points = kill_points(random.Random(7), source.size, 3)
    run = upload_with_kills(server, redis_proc, source, points, "killed-64m.bin")
    check_staged(server.data_dir, "killed-64m.bin", source.size, source.md5())
    # With 8 MiB checkpoints at least one kill came after a checkpoint: resuming did not
    # restart from zero every time.
    assert max(run.committed_at_kill) > 0


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_kill_ten_times_during_a_1gib_upload(make_server, redis_proc: RedisProcess) -> None:
    server = make_server("--checkpoint-bytes", "8M")
    source = GeneratedSource(1024 * MiB, seed=1)
    points = kill_points(random.Random(10), source.size, 10)
    run = upload_with_kills(server, redis_proc, source, points, "killed-1g.bin")
    md5 = source.md5()
    check_staged(server.data_dir, "killed-1g.bin", source.size, md5)
    print(
        f"\n1 GiB upload, one PATCH per attempt, --checkpoint-bytes 8M, "
        f"{run.kills} x kill -9 + restart (lock expiry fast-forwarded): "
        f"{run.seconds:.1f} s in all, {run.resent / MiB:.1f} MiB re-sent "
        f"({run.resent / run.size:.2%} of the file); "
        f"kill points (MiB) {[round(p / MiB, 1) for p in run.points]}; "
        f"committed at each kill (MiB) {[round(c / MiB, 1) for c in run.committed_at_kill]}; "
        f"md5 {md5} matches"
    )


def kill_mid_patch(server: ServerProcess, client: TusTestClient, data: bytes, sent: int) -> str:
    """Create an upload, stream ``sent`` of its bytes in one PATCH, kill -9 the server."""
    url = client.create_url(len(data), "stuck-lock.bin")
    partial = server.data_dir / "uploads" / f"{upload_id_of(url)}.part"
    sock = open_raw_patch(url, TOKENS[USER], 0, len(data))
    sock.sendall(data[:sent])
    wait_delivered(sock)
    wait_until(lambda: partial.stat().st_size > sent - MiB, 30, "the server's writes")
    server.kill()
    sock.close()
    return url


def test_head_after_kill_waits_out_the_dead_holders_lock(make_server) -> None:
    """No fast-forward: with the default --lock-wait, the HEAD after the restart waits for
    the dead process's lock to expire and then answers; the upload resumes."""
    server = make_server("--checkpoint-bytes", "1M")
    client = TusTestClient(server.files_url, TOKENS[USER])
    data = random.Random(3).randbytes(6 * MiB)
    url = kill_mid_patch(server, client, data, 3 * MiB + 5)
    server.start()
    response = client.head(url)
    assert response.status_code == 200, response.text
    offset = int(response.headers["Upload-Offset"])
    assert 0 < offset <= 3 * MiB + 5
    assert client.patch(url, offset, data[offset:]).status_code == 204
    check_staged(server.data_dir, "stuck-lock.bin", len(data), hashlib.md5(data).hexdigest())


def test_head_after_kill_is_not_blocked_by_the_dead_holders_lock(make_server) -> None:
    """kill -9 mid-PATCH, restart at once, HEAD with a 12 s --lock-wait (well under the 30 s
    lock TTL): the dead process's lock is taken over once its instance key lapses (6 s),
    so the HEAD does not wait out the lock TTL and answer 423."""
    server = make_server("--lock-wait", "12")
    client = TusTestClient(server.files_url, TOKENS[USER])
    data = random.Random(3).randbytes(6 * MiB)
    url = kill_mid_patch(server, client, data, 3 * MiB)
    server.start()
    response = client.head(url)
    assert response.status_code == 200, response.text
    assert int(response.headers["Upload-Offset"]) <= 3 * MiB


# -- crash points ----------------------------------------------------------------------------

FINALIZE_POINTS = ["finalize-before-move", "finalize-after-move", "finalize-before-complete"]


@pytest.fixture
def crashing_server(make_server: Callable[..., ServerProcess]) -> Callable[..., ServerProcess]:
    """Start a server that dies at the named crash point."""

    def start(crash_at: str, *extra_args: str) -> ServerProcess:
        return make_server(
            "--checkpoint-bytes", "1M", *extra_args, env={"TUS_STAGING_CRASH_AT": crash_at}
        )

    return start


def crash_with(server: ServerProcess, client: TusTestClient, url: str, data: bytes) -> None:
    """Send the whole body; the server must die at its crash point before answering."""
    with pytest.raises(requests.ConnectionError):
        client.patch(url, 0, data)
    assert server.process is not None
    assert server.process.wait(30) == CRASH_EXIT_STATUS, server.log()
    server.process = None


def restart_without_crash_point(server: ServerProcess, redis_proc: RedisProcess) -> None:
    with redis_proc.client() as rclient:
        fast_forward_lock_expiry(rclient)
    server.env = {}
    server.start()


def assert_state_at_crash(data_dir: Path, point: str, upload_id: str, name: str) -> None:
    """What the disk looks like when the process died at ``point``."""
    partial = data_dir / "uploads" / f"{upload_id}.part"
    staged = data_dir / "staging" / USER / name
    sidecar = data_dir / "metadata" / USER / name
    expected = {
        "finalize-before-move": (True, False, False),
        "finalize-after-move": (False, True, False),
        "finalize-before-complete": (False, True, True),
    }[point]
    assert (partial.exists(), staged.exists(), sidecar.exists()) == expected


def assert_finalized_once(
    data_dir: Path,
    rclient: redis.Redis,
    upload_id: str,
    name: str,
    data: bytes,
    upload_dir: Path | None = None,  # set: on another filesystem, the file is copied
) -> None:
    staged = data_dir / "staging" / USER / name
    assert staged.read_bytes() == data
    sidecar = sidecar_of(data_dir, name)
    assert sidecar["md5"] == hashlib.md5(data).hexdigest()
    assert sidecar["size"] == len(data)
    assert sidecar["uploadId"] == upload_id
    assert sidecar["mtime"] == int(staged.stat().st_mtime * 1000)
    if upload_dir is None:
        # Moved, not copied, and exactly once: the staged file is the partial file's inode.
        info = staged.stat()
        identity = rclient.hget(upload_key(upload_id), "partial_identity")
        assert identity == f"{info.st_dev}:{info.st_ino}".encode()
    assert status_in_redis(rclient, upload_id) == "complete"
    assert rclient.zscore(FINALIZING_INDEX_KEY, upload_id) is None
    assert_only(data_dir, {name}, upload_dir)


def test_crash_after_fsync_before_commit(crashing_server, redis_proc: RedisProcess) -> None:
    """Bytes fsynced but not committed are not acknowledged: HEAD says 0, the partial file
    holds bytes past it, and the resumed PATCH trims and rewrites them."""
    server = crashing_server("commit-after-fsync")
    client = TusTestClient(server.files_url, TOKENS[USER])
    data = random.Random(11).randbytes(3 * MiB + 4321)
    url = client.create_url(len(data), "fsync.bin")
    upload_id = upload_id_of(url)
    crash_with(server, client, url, data)
    partial = server.data_dir / "uploads" / f"{upload_id}.part"
    assert partial.stat().st_size >= MiB  # written and fsynced ...
    with redis_proc.client() as rclient:
        assert committed_in_redis(rclient, upload_id) == 0  # ... never committed

        restart_without_crash_point(server, redis_proc)
        assert client.offset(url) == 0
        response = client.patch(url, 0, data)
        assert response.status_code == 204, response.text
        assert int(response.headers["Upload-Offset"]) == len(data)
        assert client.offset(url) == len(data)
        assert_finalized_once(server.data_dir, rclient, upload_id, "fsync.bin", data)


@pytest.mark.parametrize("recovery", ["head", "patch"])
@pytest.mark.parametrize("point", FINALIZE_POINTS)
def test_interrupted_finalize_is_completed_by_the_next_request(
    crashing_server, redis_proc: RedisProcess, point: str, recovery: str
) -> None:
    server = crashing_server(point)
    client = TusTestClient(server.files_url, TOKENS[USER])
    data = random.Random(point).randbytes(2 * MiB + 999)
    name = f"{point}.bin"
    url = client.create_url(len(data), name)
    upload_id = upload_id_of(url)
    crash_with(server, client, url, data)
    with redis_proc.client() as rclient:
        assert status_in_redis(rclient, upload_id) == "finalizing"
        assert committed_in_redis(rclient, upload_id) == len(data)
        assert_state_at_crash(server.data_dir, point, upload_id, name)

        restart_without_crash_point(server, redis_proc)
        if recovery == "head":
            response = client.head(url)
            assert response.status_code == 200, response.text
        else:  # a client that resumes from its own idea of the offset: an empty PATCH
            response = client.patch(url, len(data), b"")
            assert response.status_code == 204, response.text
        assert int(response.headers["Upload-Offset"]) == len(data)
        assert_finalized_once(server.data_dir, rclient, upload_id, name, data)
        assert client.offset(url) == len(data)  # and again: nothing happens twice
        assert_finalized_once(server.data_dir, rclient, upload_id, name, data)


@pytest.fixture
def shm_upload_dir() -> Iterator[Path]:
    """An upload dir on tmpfs, another filesystem than the data dir: finalize copies."""
    if not Path("/dev/shm").is_dir():
        pytest.skip("no /dev/shm")
    path = Path(tempfile.mkdtemp(prefix="tus-staging-uploads-", dir="/dev/shm"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize("point", FINALIZE_POINTS)
def test_interrupted_finalize_across_filesystems(
    crashing_server, redis_proc: RedisProcess, shm_upload_dir: Path, point: str
) -> None:
    """The copy path (partial file on another filesystem): temp file in the destination
    directory, partial removed only after the sidecar. A crash anywhere in it is completed
    by the next HEAD, leaving no temp file and no partial."""
    server = crashing_server(point, "--upload-dir", str(shm_upload_dir))
    assert os.stat(shm_upload_dir).st_dev != os.stat(server.data_dir).st_dev
    client = TusTestClient(server.files_url, TOKENS[USER])
    data = random.Random(point + "exdev").randbytes(2 * MiB + 3)
    name = f"exdev-{point}.bin"
    url = client.create_url(len(data), name)
    upload_id = upload_id_of(url)
    crash_with(server, client, url, data)
    partial = shm_upload_dir / f"{upload_id}.part"
    staged = server.data_dir / "staging" / USER / name
    sidecar = server.data_dir / "metadata" / USER / name
    expected = {
        "finalize-before-move": (True, False, False),
        "finalize-after-move": (True, True, False),  # copied; partial kept until the sidecar
        "finalize-before-complete": (False, True, True),
    }[point]
    assert (partial.exists(), staged.exists(), sidecar.exists()) == expected
    with redis_proc.client() as rclient:
        restart_without_crash_point(server, redis_proc)
        assert client.offset(url) == len(data)
        assert_finalized_once(server.data_dir, rclient, upload_id, name, data, shm_upload_dir)


async def run_janitor(redis_proc: RedisProcess, data_dir: Path, min_age: float) -> int:
    client = redis.asyncio.Redis(unix_socket_path=str(redis_proc.socket))
    uploads = Uploads(client, DataLayout.under(data_dir), StoreSettings())
    try:
        report = await janitor_pass(uploads, min_finalize_age=min_age)
        assert report is not None
        return report.finalized
    finally:
        uploads.close()
        await client.aclose()


@pytest.mark.parametrize("point", FINALIZE_POINTS)
def test_interrupted_finalize_is_completed_by_the_janitor(
    crashing_server, redis_proc: RedisProcess, point: str
) -> None:
    """The janitor's pass on the real Redis, no client request."""
    server = crashing_server(point)
    client = TusTestClient(server.files_url, TOKENS[USER])
    data = random.Random(point + "janitor").randbytes(MiB + 77)
    name = f"janitor-{point}.bin"
    url = client.create_url(len(data), name)
    upload_id = upload_id_of(url)
    crash_with(server, client, url, data)
    with redis_proc.client() as rclient:
        fast_forward_lock_expiry(rclient)
        # A finalize younger than min_age may still be running: left alone.
        assert asyncio.run(run_janitor(redis_proc, server.data_dir, min_age=3600)) == 0
        assert status_in_redis(rclient, upload_id) == "finalizing"
        assert_state_at_crash(server.data_dir, point, upload_id, name)

        assert asyncio.run(run_janitor(redis_proc, server.data_dir, min_age=0)) == 1
        assert_finalized_once(server.data_dir, rclient, upload_id, name, data)
        assert asyncio.run(run_janitor(redis_proc, server.data_dir, min_age=0)) == 0

        server.env = {}
        server.start()
        assert client.offset(url) == len(data)
        assert_finalized_once(server.data_dir, rclient, upload_id, name, data)


def test_janitor_loop_of_a_restarted_server_completes_the_finalize(
    crashing_server, redis_proc: RedisProcess
) -> None:
    """The same through the server's own janitor loop (``--janitor-interval 1`` and
    ``--stuck-finalize-age 0``), watched in Redis only: no request touches the upload."""
    point = "finalize-after-move"
    server = crashing_server(point, "--janitor-interval", "1", "--stuck-finalize-age", "0")
    client = TusTestClient(server.files_url, TOKENS[USER])
    data = random.Random(5).randbytes(MiB + 5)
    name = "janitor-loop.bin"
    url = client.create_url(len(data), name)
    upload_id = upload_id_of(url)
    crash_with(server, client, url, data)
    with redis_proc.client() as rclient:
        assert_state_at_crash(server.data_dir, point, upload_id, name)
        restart_without_crash_point(server, redis_proc)
        wait_until(
            lambda: status_in_redis(rclient, upload_id) == "complete", 30, "janitor's finalize"
        )
        assert_finalized_once(server.data_dir, rclient, upload_id, name, data)


@pytest.mark.parametrize("point", ["finalize-after-move", "finalize-before-complete"])
def test_recovery_never_claims_a_file_replaced_meanwhile(
    crashing_server, redis_proc: RedisProcess, point: str
) -> None:
    """Upload A dies after its move; upload B then finishes at the same destination. A's
    recovery must not write A's sidecar over B's file (B's file is not A's inode)."""
    server = crashing_server(point)
    client = TusTestClient(server.files_url, TOKENS[USER])
    first = random.Random(1).randbytes(MiB + 1)
    second = random.Random(2).randbytes(MiB + 2)
    url_a = client.create_url(len(first), "same.bin")
    crash_with(server, client, url_a, first)
    restart_without_crash_point(server, redis_proc)  # A is left alone until B is done
    url_b = client.create_url(len(second), "same.bin")
    response = client.patch(url_b, 0, second)
    assert response.status_code == 204, response.text

    assert client.offset(url_a) == len(first)  # A's finalize completes ...
    with redis_proc.client() as rclient:
        assert status_in_redis(rclient, upload_id_of(url_a)) == "complete"
        # ... without touching B's file or sidecar.
        assert_finalized_once(server.data_dir, rclient, upload_id_of(url_b), "same.bin", second)
