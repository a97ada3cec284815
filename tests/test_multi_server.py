"""Several servers, one Redis, one data dir.

* two ``tus-staging serve`` processes on different ports: the PATCHes of one upload
  alternate between them, one is killed (-9) mid-PATCH, the other finishes the upload;
* ``--workers 2`` (gunicorn): two worker processes, concurrent uploads, SIGTERM to the
  master stops everything cleanly and leaves Redis consistent (every upload resumable);
* fifty uploads finishing at one destination: exactly one whole file wins, its sidecar
  describes it, and no temp file is left anywhere.
"""

from __future__ import annotations

import hashlib
import json
import random
import signal
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis

from store.keys import FINALIZING_INDEX_KEY, upload_key
from tus_staging.embedded_redis import PID_FILE, socket_path_for

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
USER = "alice"


def on(server: ServerProcess, url: str) -> str:
    """The same upload's URL on another server."""
    return server.files_url + upload_id_of(url)


def files_under(directory: Path) -> set[str]:
    if not directory.exists():
        return set()
    return {str(p.relative_to(directory)) for p in directory.rglob("*") if not p.is_dir()}


def lock_keys(client: redis.Redis) -> list[bytes]:
    return list(client.scan_iter(match="tus-staging:{*}:lock"))


def check_staged(data_dir: Path, name: str, data: bytes) -> None:
    staged = data_dir / "staging" / USER / name
    assert staged.read_bytes() == data
    sidecar = json.loads((data_dir / "metadata" / USER / name).read_text())
    assert sidecar["md5"] == hashlib.md5(data).hexdigest()
    assert sidecar["size"] == len(data)


# -- two servers, one Redis, one data dir ----------------------------------------------------


def test_patches_alternate_between_two_servers_and_one_dies(
    make_server, redis_proc: RedisProcess, tmp_path: Path
) -> None:
    data_dir = tmp_path / "shared-data"
    first = make_server("--checkpoint-bytes", "1M", data_dir=data_dir)
    second = make_server("--checkpoint-bytes", "1M", data_dir=data_dir)
    assert first.port != second.port
    servers = [first, second]
    data = random.Random(42).randbytes(12 * MiB + 12_345)
    client = TusTestClient(first.files_url, TOKENS[USER])
    url = client.create_url(len(data), "two-servers.bin")

    # Six PATCHes, each to the other server; each sees the offset the other committed.
    offset, piece = 0, 1_000_003
    for turn in range(6):
        target = on(servers[turn % 2], url)
        assert client.offset(target) == offset
        response = client.patch(target, offset, data[offset : offset + piece])
        assert response.status_code == 204, response.text
        offset += piece
        assert int(response.headers["Upload-Offset"]) == offset

    # The next PATCH streams into the first server, which is killed (-9) midway.
    sock = open_raw_patch(on(first, url), TOKENS[USER], offset, len(data) - offset)
    sent = 3 * MiB + 17
    sock.sendall(data[offset : offset + sent])
    wait_delivered(sock)
    partial = data_dir / "uploads" / f"{upload_id_of(url)}.part"
    wait_until(lambda: partial.stat().st_size > offset + sent - MiB, 30, "the server's writes")
    first.kill()
    sock.close()
    with redis_proc.client() as rclient:
        fast_forward_lock_expiry(rclient)  # the dead server's lock (see test_crash_recovery)

    # The second server finishes it, from the offset the first one committed.
    committed = client.offset(on(second, url))
    assert offset + sent - (MiB + 3 * MiB) <= committed <= offset + sent  # 1M checkpoints
    response = client.patch(on(second, url), committed, data[committed:])
    assert response.status_code == 204, response.text
    assert int(response.headers["Upload-Offset"]) == len(data)
    check_staged(data_dir, "two-servers.bin", data)
    assert files_under(data_dir / "uploads") == set()


# -- gunicorn workers ----------------------------------------------------------------------


def children_of(pid: int) -> dict[int, bytes]:
    """Live child processes of ``pid`` and their command lines, from /proc."""
    found: dict[int, bytes] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found[int(entry.name)] = cmdline
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture(params=["external-redis", "embedded-redis"])
def redis_mode(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def workers_server(
    tmp_path: Path, redis_proc: RedisProcess, tokens_file: Path, redis_mode: str
) -> Iterator[ServerProcess]:
    redis_url = redis_proc.url if redis_mode == "external-redis" else None
    server = ServerProcess(tmp_path / "data", redis_url, tokens_file, ["--workers", "2"])
    server.start()
    yield server
    server.stop()


def redis_of(server: ServerProcess, redis_proc: RedisProcess) -> redis.Redis:
    if server.redis_url:
        return redis_proc.client()
    return redis.Redis(unix_socket_path=str(socket_path_for(server.data_dir / "redis")))


def test_two_gunicorn_workers(
    workers_server: ServerProcess, redis_proc: RedisProcess, redis_mode: str
) -> None:
    server = workers_server
    assert server.process is not None
    master = server.process.pid

    def workers() -> list[int]:
        return [p for p, cmd in children_of(master).items() if b"redis-server" not in cmd]

    wait_until(lambda: len(workers()) == 2, 30, "two gunicorn workers")
    worker_pids = workers()
    assert len(worker_pids) == 2
    redis_pid = None
    if redis_mode == "embedded-redis":
        redis_pid = int((server.data_dir / "redis" / PID_FILE).read_text())
        assert redis_pid in children_of(master)

    # Eight concurrent uploads, each in several PATCHes (so both workers take part).
    contents = [random.Random(i).randbytes(3 * MiB + i) for i in range(8)]

    def upload(index: int) -> str:
        client = TusTestClient(server.files_url, TOKENS[USER])
        return client.upload(contents[index], f"w{index}.bin", chunk=700_001)

    with ThreadPoolExecutor(8) as pool:
        urls = list(pool.map(upload, range(8)))
    for index, data in enumerate(contents):
        check_staged(server.data_dir, f"w{index}.bin", data)

    # One upload left half done, and one PATCH streaming when SIGTERM comes.
    client = TusTestClient(server.files_url, TOKENS[USER])
    unfinished = random.Random(99).randbytes(4 * MiB)
    half_url = client.create_url(len(unfinished), "half.bin")
    assert client.patch(half_url, 0, unfinished[: 2 * MiB]).status_code == 204
    streaming = random.Random(98).randbytes(4 * MiB)
    stream_url = client.create_url(len(streaming), "streaming.bin")
    sock = open_raw_patch(stream_url, TOKENS[USER], 0, len(streaming))
    sent = MiB + 12_345
    sock.sendall(streaming[:sent])
    wait_delivered(sock)

    server.process.send_signal(signal.SIGTERM)
    # Graceful: the streaming PATCH is answered (503, retry later) with what it committed.
    status, headers = read_response(sock)
    sock.close()
    assert status == 503, (status, headers)
    assert server.process.wait(60) == 0, server.log()
    server.process = None
    assert not any(alive(pid) for pid in worker_pids)
    if redis_pid is not None:
        assert not alive(redis_pid), "the embedded redis-server outlived the master"
    else:
        with redis_proc.client() as rclient:
            assert lock_keys(rclient) == []  # every lock was released
            assert rclient.zcard(FINALIZING_INDEX_KEY) == 0

    # Restart (one worker): every upload is where it was, and the two resume.
    server.extra_args = []
    server.start()
    for url, data in zip(urls, contents, strict=True):
        assert client.offset(url) == len(data)
    assert client.offset(half_url) == 2 * MiB
    # Every byte the worker had received when it was told to stop was committed.
    assert client.offset(stream_url) == sent
    for url, data in ((half_url, unfinished), (stream_url, streaming)):
        offset = client.offset(url)
        response = client.patch(url, offset, data[offset:])
        assert response.status_code == 204, response.text
    check_staged(server.data_dir, "half.bin", unfinished)
    check_staged(server.data_dir, "streaming.bin", streaming)
    with redis_of(server, redis_proc) as rclient:
        assert rclient.zcard(FINALIZING_INDEX_KEY) == 0
        for url in [*urls, half_url, stream_url]:
            assert rclient.hget(upload_key(upload_id_of(url)), "status") == b"complete"
    assert files_under(server.data_dir / "uploads") == set()


# -- fifty uploads, one destination ----------------------------------------------------------


def test_fifty_concurrent_uploads_to_one_destination(
    server: ServerProcess, redis_proc: RedisProcess
) -> None:
    count = 50
    contents = [random.Random(1000 + i).randbytes(150_000 + 7 * i) for i in range(count)]
    halfway = threading.Barrier(count, timeout=60)

    def upload(index: int) -> str:
        client = TusTestClient(server.files_url, TOKENS[USER])
        data = contents[index]
        url = client.create_url(len(data), "shared.bin", destPath="fifty")
        half = len(data) // 2
        assert client.patch(url, 0, data[:half]).status_code == 204
        halfway.wait()  # everyone finishes together: the finalizes overlap
        response = client.patch(url, half, data[half:])
        assert response.status_code == 204, response.text
        return url

    with ThreadPoolExecutor(count) as pool:
        urls = list(pool.map(upload, range(count)))

    staged = server.data_dir / "staging" / USER / "fifty" / "shared.bin"
    final = staged.read_bytes()
    assert final in contents  # exactly one of them, whole
    winner = contents.index(final)
    sidecar = json.loads((server.data_dir / "metadata" / USER / "fifty" / "shared.bin").read_text())
    assert sidecar["md5"] == hashlib.md5(final).hexdigest()
    assert sidecar["size"] == len(final)
    assert sidecar["uploadId"] == upload_id_of(urls[winner])
    # No stray temp or partial file anywhere under the data dir.
    assert files_under(server.data_dir / "staging") == {f"{USER}/fifty/shared.bin"}
    assert files_under(server.data_dir / "metadata") == {f"{USER}/fifty/shared.bin"}
    assert files_under(server.data_dir / "uploads") == set()
    client = TusTestClient(server.files_url, TOKENS[USER])
    for url, data in zip(urls, contents, strict=True):
        assert client.offset(url) == len(data)
    with redis_proc.client() as rclient:
        assert rclient.zcard(FINALIZING_INDEX_KEY) == 0
        assert lock_keys(rclient) == []
