"""``--redis-url`` for every kind of Redis: the sentinel URL's grammar (hypothesis), a
wrong or unreachable URL stopping the server at its start with one line, the whole life
of uploads on a real Redis Cluster (every script and command on one slot, or the cluster
refuses it), and a password-protected master found through Sentinel in another db."""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import re
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.errors import Locked
from store.janitor import janitor_pass
from store.keys import EVENTS_STREAM_KEY, QUOTA_USERS_KEY, user_uploads_key
from store.layout import DataLayout
from store.liveness import Liveness
from store.locks import LockSettings, acquire_lock
from store.scripts import ALL_SCRIPTS
from store.topology import (
    BadRedisUrl,
    SentinelUrl,
    StateRedis,
    connect,
    parse_sentinel_url,
    redacted,
)
from store.uploads import StoreSettings, Uploads
from tus_staging.app import connect_state_store
from tus_staging.serve import check_redis

from .servers import (
    TOKENS,
    InProcessServer,
    free_port,
    metric_values,
    open_raw_patch,
    read_response,
)
from .topologies import RedisClusterProcesses, SentinelProcesses, role
from .tus_client import TusTestClient, upload_id_of

MiB = 1 << 20

# -- the sentinel URL ------------------------------------------------------------------------

hosts = st.one_of(
    st.from_regex(r"[a-z][a-z0-9-]{0,20}(\.[a-z][a-z0-9-]{0,10}){0,2}", fullmatch=True),
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(str),
)
ports = st.integers(1, 65535)
words = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=20)


def host_text(host: str) -> str:
    return f"[{host}]" if ":" in host else host


@given(
    sentinels=st.lists(st.tuples(hosts, ports), min_size=1, max_size=5),
    master=words,
    db=st.none() | st.integers(0, 2**31 - 1),
    username=st.none() | words,
    password=st.none() | words,
)
def test_a_sentinel_url_says_what_it_names(
    sentinels: list[tuple[str, int]],
    master: str,
    db: int | None,
    username: str | None,
    password: str | None,
) -> None:
    auth = ""
    if username is not None or password is not None:
        auth = quote(username or "", safe="") + ":" + quote(password or "", safe="") + "@"
    where = ",".join(f"{host_text(host)}:{port}" for host, port in sentinels)
    path = "/" + quote(master, safe="") + (f"/{db}" if db is not None else "")
    parsed = parse_sentinel_url(f"redis+sentinel://{auth}{where}{path}")
    assert parsed == SentinelUrl(
        sentinels=tuple(sentinels),
        master=master,
        db=db or 0,
        username=username or None,
        password=password or None,
    )
    if password:
        shown = redacted(f"redis+sentinel://{auth}{where}{path}")
        assert shown.rpartition("@")[0] == "redis+sentinel://" + auth.rpartition(":")[0] + ":***"


def test_a_sentinel_without_a_port_is_on_26379() -> None:
    parsed = parse_sentinel_url("redis+sentinel://a,b:1,[::1]/m?sentinel_password=s%20t")
    assert parsed.sentinels == (("a", 26379), ("b", 1), ("::1", 26379))
    assert parsed.sentinel_password == "s t"


@given(st.text(max_size=60))
def test_any_sentinel_url_parses_or_says_why_not(rest: str) -> None:
    try:
        parsed = parse_sentinel_url("redis+sentinel://" + rest)
    except BadRedisUrl as error:
        assert str(error) and "\n" not in str(error)
    else:
        assert parsed.master and parsed.sentinels
        assert all(host and 0 < port < 65536 for host, port in parsed.sentinels)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("redis+sentinel://h:1", "master's name"),
        ("redis+sentinel://h:1/m/x", "the database must be a number"),
        ("redis+sentinel://h:1/m/0/1", "MASTERNAME/DB"),
        ("redis+sentinel://h:99999/m", "the port of 'h:99999'"),
        ("redis+sentinel://h:1,/m", "no valid host"),
        ("redis+sentinel://[::1]x/m", "[IPv6]:PORT"),
        ("redis+sentinel://[::1/m", "Invalid IPv6 URL"),
        ("redis+sentinel://h/m?db=2", "unknown parameter(s) db"),
        ("http://h:1", "scheme must be one of"),
        ("h:6379", "scheme must be one of"),
    ],
)
async def test_a_wrong_url_says_why(url: str, why: str) -> None:
    with pytest.raises(BadRedisUrl, match=re.escape(why)):
        await connect(url)


@given(st.text(st.characters(codec="ascii", categories=("L", "N")), max_size=20))
def test_no_password_is_ever_shown(suffix: str) -> None:
    password = "SECRET" + suffix
    for url in (
        f"redis://:{password}@h:1/0",
        f"rediss://user:{password}@h:1",
        f"unix://:{password}@/run/redis.sock",
        f"redis://h:1/0?password={password}",
        f"redis+sentinel://:{password}@a:1,b:2/m?sentinel_password={password}",
    ):
        assert "SECRET" not in redacted(url)


# -- a wrong URL stops the server at its start --------------------------------------------------


def closed_port() -> int:
    port = free_port()
    with socket.socket() as probe:  # nothing listens there: connections are refused
        assert probe.connect_ex(("127.0.0.1", port)) != 0
    return port


def test_serve_with_an_unreachable_redis_stops_at_once_with_one_line(tmp_path: Path) -> None:
    url = f"redis://:hunter2@127.0.0.1:{closed_port()}/0"
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "tus_staging.cli", "serve", "--redis-url", url,
         "--data-dir", str(tmp_path / "data"), "--port", str(free_port())],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    assert time.monotonic() - started < 20
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("tus-staging: no usable Redis at --redis-url redis://:***@127.0.0.1")
    assert "hunter2" not in result.stderr + result.stdout


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("ftp://127.0.0.1/", "the scheme must be one of"),
        ("redis://127.0.0.1:notaport", "--redis-url redis://127.0.0.1:notaport: "),
        ("redis+sentinel://127.0.0.1:1", "needs the master's name"),
        ("redis+sentinel://127.0.0.1:{port}/staging", "no usable Redis"),
    ],
)
def test_a_wrong_url_is_refused_before_serving(url: str, said: str) -> None:
    with pytest.raises(SystemExit) as refused:
        check_redis(url.format(port=closed_port()))
    message = str(refused.value)
    assert said in message and "\n" not in message and len(message) < 400


# -- a Redis Cluster ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterProcesses]:
    processes = RedisClusterProcesses(tmp_path_factory.mktemp("cluster"))
    processes.start()
    yield processes
    processes.stop()


@pytest.fixture
async def on_cluster(cluster: RedisClusterProcesses) -> AsyncIterator[StateRedis]:
    state = await connect_state_store(cluster.url)
    yield state
    await state.aclose()


async def test_any_node_leads_to_the_whole_cluster(cluster: RedisClusterProcesses) -> None:
    for node in (cluster.nodes[0], cluster.nodes[-1]):  # a master, a replica
        state = await connect(node.url)
        try:
            assert state.is_cluster
            assert state.description.startswith("Redis Cluster of 3 masters and ")
        finally:
            await state.aclose()
    with pytest.raises(BadRedisUrl, match="SELECT is not allowed in cluster mode"):
        await connect(cluster.nodes[0].url + "/1")


@pytest.fixture
def cluster_server(
    cluster: RedisClusterProcesses, tmp_path: Path, tokens_file: Path
) -> Iterator[InProcessServer]:
    server = InProcessServer(tmp_path / "data", cluster.url, tokens_file, ["--lock-wait", "2"])
    server.start()
    yield server
    server.stop()


def test_an_upload_lives_its_whole_life_on_a_cluster(
    cluster: RedisClusterProcesses, cluster_server: InProcessServer
) -> None:
    """Every verb, every extension: creation with a body, PATCHes (one with a quiet pause,
    so that the lock is renewed), HEAD, deferred length, concatenation, DELETE, metadata
    on demand; each script and each command must stay in one slot, or the cluster refuses."""
    alice = TusTestClient(cluster_server.files_url, TOKENS["alice"])
    data = random.Random(7).randbytes(3 * MiB + 11)

    created = alice.create(len(data), "whole.bin", body=data[:MiB])
    assert created.status_code == 201, created.text
    url = alice.location(created)
    assert alice.offset(url) == MiB
    sock = open_raw_patch(url, TOKENS["alice"], MiB, MiB)
    sock.sendall(data[MiB : MiB + MiB // 2])
    time.sleep(1.5)  # quiet: the server renews the lock meanwhile (and commits what came)
    sock.sendall(data[MiB + MiB // 2 : 2 * MiB])
    assert read_response(sock)[0] == 204
    sock.close()
    assert alice.patch(url, 2 * MiB, data[2 * MiB :]).status_code == 204
    staged = cluster_server.data_dir / "staging" / "alice" / "whole.bin"
    assert staged.read_bytes() == data

    deferred = alice.create_url(None, "deferred.bin")
    response = alice.patch(deferred, 0, b"abc", Upload_Length="3")
    assert response.status_code == 204, response.text

    parts = [alice.create_partial(piece, filename="part") for piece in (b"first ", b"second")]
    final = alice.create_final(parts, "joined.txt")
    assert final.status_code == 201, final.text
    joined = cluster_server.data_dir / "staging" / "alice" / "joined.txt"
    assert joined.read_bytes() == b"first second"

    doomed = alice.create_url(10, "doomed.bin")
    assert alice.delete(doomed).status_code == 204
    assert alice.head(doomed).status_code == 404

    dropped = cluster_server.data_dir / "staging" / "alice" / "dropped.txt"
    dropped.write_text("a\nb\n")
    response = alice.session.get(
        f"{cluster_server.url}/metadata/dropped.txt", headers=alice.headers(), timeout=30
    )
    assert response.status_code == 200, response.text
    assert json.loads(response.text)["md5"] == hashlib.md5(b"a\nb\n").hexdigest()

    health = alice.session.get(f"{cluster_server.url}/healthz", timeout=30)
    assert health.status_code == 200 and health.json()["checks"]["redis"] is True
    assert metric_values(cluster_server.url)["tus_staging_open_uploads"] == 0

    with cluster.master_of(EVENTS_STREAM_KEY).client() as master:
        events = [fields for _, fields in master.xrange(EVENTS_STREAM_KEY)]
    finished = {e[b"uploadId"].decode() for e in events if e[b"event"] == b"finished"}
    assert {upload_id_of(url), upload_id_of(deferred)} <= finished


async def test_the_janitor_on_a_cluster(on_cluster: StateRedis, tmp_path: Path) -> None:
    """Expired uploads go, reservations of vanished uploads are pruned (found through the
    quota users' set: no SCAN over every master)."""
    layout = DataLayout.under(tmp_path / "data")
    layout.create_dirs()
    later = [time.time()]
    uploads = Uploads(on_cluster.client, layout, StoreSettings(), clock=lambda: later[0])
    try:
        record = await uploads.create("carol", length=5, metadata="", destination=None)
        await uploads.quotas.reserve("carol", "0" * 32, 7)  # its upload never existed
        assert await on_cluster.client.sismember(QUOTA_USERS_KEY, "carol")
        later[0] += StoreSettings().expire_after + 1
        report = await janitor_pass(uploads, min_finalize_age=0)
        assert report is not None
        assert report.expired >= 1 and report.pruned >= 1
        assert await uploads.records.get(record.id) is None
        assert await on_cluster.client.hlen(user_uploads_key("carol")) == 0
    finally:
        uploads.close()


async def test_a_dead_holders_lock_is_taken_over_on_a_cluster(on_cluster: StateRedis) -> None:
    """The lock and the holder's instance key live in different slots: two single-key steps."""
    redis_client = on_cluster.client
    settings = LockSettings(ttl=30, wait=5)
    dead = Liveness(redis_client)  # never started: its instance key does not exist
    held = await acquire_lock(redis_client, "takeover", settings, dead)
    alive = Liveness(redis_client)
    await alive.start()
    try:
        started = time.monotonic()
        newcomer = await acquire_lock(redis_client, "takeover", settings, alive)
        assert time.monotonic() - started < settings.wait
        assert newcomer.token != held.token
        with pytest.raises(Locked):
            await acquire_lock(redis_client, "takeover", LockSettings(ttl=30, wait=0.2), alive)
        await newcomer.release()
    finally:
        await alive.stop()


async def test_every_script_is_loaded_on_every_master(
    cluster: RedisClusterProcesses, on_cluster: StateRedis
) -> None:
    shas = [script.sha for script in ALL_SCRIPTS]
    assert len(shas) >= 7
    masters = [node for node in cluster.live_nodes() if role(node) == "master"]
    assert len(masters) == 3
    for master in masters:
        with master.client() as client:
            assert all(client.script_exists(*shas)), master.port


# -- Sentinel with a password and a db ----------------------------------------------------------


def test_a_password_protected_master_through_sentinel_in_db_3(tmp_path: Path) -> None:
    topology = SentinelProcesses(tmp_path / "sentinel", password="s3cret")
    topology.start()
    try:
        description = check_redis(topology.url(db=3))
        assert description.startswith("master 'staging' of the sentinels at 127.0.0.1:")
        assert "s3cret" not in description

        async def write() -> None:
            state = await connect(topology.url(db=3))
            try:
                await state.client.set("tus-staging:probe", b"1")
            finally:
                await state.aclose()

        asyncio.run(write())
        with topology.master.client() as master:
            master.select(3)
            assert master.get("tus-staging:probe") == b"1"
        with pytest.raises(SystemExit, match="no usable Redis"):
            check_redis(topology.url(db=3).replace(":s3cret@", ":wrong@"))
        with pytest.raises(SystemExit, match="no usable Redis"):
            check_redis(topology.url().replace("/staging", "/nosuchmaster"))
    finally:
        topology.stop()
