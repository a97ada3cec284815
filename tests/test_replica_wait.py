"""Writes that wait for a replica (WAIT), against a real master and replica: a write a
replica acknowledged survives its master's death; one no replica acknowledged in time
stands on the master alone and is counted; no replica online, no wait. And a master
demoted under a server (its URL now a replica's) is 503, never 500."""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from store.keys import upload_key
from store.locks import _RELEASE
from store.replication import PRESENCE_TTL, ReplicatedWrites, ReplicaWaitSettings
from store.topology import BadRedisUrl, connect
from tus_staging.app import connect_state_store

from .hand_clock import Clock
from .servers import TOKENS, InProcessServer, RedisProcess, free_port, metric_values, wait_until
from .topologies import SYNC_AT_ONCE, replicas_online, role
from .tus_client import TusTestClient

MiB = 1 << 20


class Pair:
    def __init__(self, directory: Path):
        self.master = RedisProcess(directory / "master", port=free_port(), extra_args=SYNC_AT_ONCE)
        self.replica = RedisProcess(
            directory / "replica",
            port=free_port(),
            extra_args=["--replicaof", "127.0.0.1", str(self.master.port)],
        )

    def start(self) -> None:
        self.master.start()
        self.replica.start()
        wait_until(lambda: replicas_online(self.master) == 1, 30, "the replica in sync")

    def stop(self) -> None:
        self.replica.stop()
        self.master.stop()


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    started = Pair(tmp_path)
    started.start()
    yield started
    started.stop()


@pytest.fixture
async def master(pair: Pair) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis(port=pair.master.port)
    yield client
    await client.aclose()


class Waits(list[tuple[float, bool]]):
    """What ReplicatedWrites reported: (seconds, acknowledged) per waited write."""

    def __call__(self, seconds: float, acknowledged: bool) -> None:
        self.append((seconds, acknowledged))


async def test_an_acknowledged_write_survives_its_master(pair: Pair, master) -> None:
    waits = Waits()
    writes = ReplicatedWrites(master, ReplicaWaitSettings(replicas=1, timeout=2.0), waits)
    key = upload_key("a" * 32)
    for offset in range(1, 21):  # the last of a burst, the one most likely still in flight
        await writes.command(key, ("HSET", key, "offset", offset))
    assert len(waits) == 20 and all(acknowledged for _, acknowledged in waits)
    pair.master.kill()
    with pair.replica.client() as replica:
        replica.replicaof("NO", "ONE")
        assert replica.hget(key, "offset") == b"20"


async def test_a_write_no_replica_acknowledges_stands_on_the_master(pair: Pair, master) -> None:
    waits = Waits()
    writes = ReplicatedWrites(master, ReplicaWaitSettings(replicas=1, timeout=0.3), waits)
    key = upload_key("b" * 32)
    pair.replica.pause()  # still online for its master: its connection stays open
    try:
        started = time.monotonic()
        await writes.command(key, ("HSET", key, "offset", 2))
        took = time.monotonic() - started
    finally:
        pair.replica.resume()
    assert len(waits) == 1 and not waits[0][1]
    assert took >= 0.3
    assert await master.hget(key, "offset") == b"2"


async def test_no_wait_without_an_online_replica(pair: Pair, master) -> None:
    waits, clock = Waits(), Clock(1000.0)
    writes = ReplicatedWrites(master, ReplicaWaitSettings(), waits, clock)
    key = upload_key("c" * 32)
    await writes.command(key, ("HSET", key, "offset", 1))
    assert len(waits) == 1
    pair.replica.kill()
    wait_until(lambda: replicas_online(pair.master) == 0, 10, "the master to see it gone")
    await writes.command(key, ("HSET", key, "offset", 2))
    assert len(waits) == 2, "the count of replicas is trusted for a few seconds"
    clock.now += PRESENCE_TTL
    await writes.command(key, ("HSET", key, "offset", 3))
    assert len(waits) == 2, "a master without replicas was waited on"
    assert await master.hget(key, "offset") == b"3"


async def test_zero_replicas_to_wait_for_never_waits(pair: Pair, master) -> None:
    waits = Waits()
    writes = ReplicatedWrites(master, ReplicaWaitSettings(replicas=0), waits)
    key = upload_key("d" * 32)
    await writes.command(key, ("HSET", key, "offset", 1))
    assert waits == [] and await master.hget(key, "offset") == b"1"


async def test_a_script_the_master_forgot_is_loaded_again(pair: Pair, master) -> None:
    """A promoted replica, a restarted master: NOSCRIPT, then the script runs once."""
    writes = ReplicatedWrites(master, ReplicaWaitSettings())
    name = "tus-staging:{e}:lock"
    await master.set(name, "token")
    await master.script_flush()
    assert await writes.script(_RELEASE, [name], ["token"]) == 1
    assert await master.exists(name) == 0
    await master.script_flush()
    assert await _RELEASE.run(master, [name], ["other"]) == 0


@pytest.mark.parametrize("timeout", [0.0, -1.0, 4.5, float("nan")])
def test_the_wait_timeout_stays_below_the_socket_timeout(timeout: float) -> None:
    with pytest.raises(ValueError, match="timeout"):
        ReplicaWaitSettings(timeout=timeout)


async def test_a_replica_url_is_refused(pair: Pair) -> None:
    with pytest.raises(BadRedisUrl, match="is a replica"):
        await connect(pair.replica.url)
    state = await connect_state_store(pair.master.url)
    assert state.description == f"Redis at 127.0.0.1:{pair.master.port}"
    await state.aclose()


@pytest.fixture
def server_on_master(pair: Pair, tmp_path: Path, tokens_file: Path) -> Iterator[InProcessServer]:
    server = InProcessServer(
        tmp_path / "data", pair.master.url, tokens_file, ["--wait-replicas-timeout", "0.3"]
    )
    server.start()
    yield server
    server.stop()


def waits_counted(server: InProcessServer) -> tuple[float, float]:
    values = metric_values(server.url)
    return (
        values.get('tus_staging_replica_waits_total{outcome="acknowledged"}', 0.0),
        values.get('tus_staging_replica_waits_total{outcome="timed_out"}', 0.0),
    )


def test_the_server_counts_its_waits(pair: Pair, server_on_master: InProcessServer) -> None:
    client = TusTestClient(server_on_master.files_url, TOKENS["alice"])
    data = random.Random(5).randbytes(2 * MiB)
    before = waits_counted(server_on_master)
    url = client.create_url(len(data), "waited.bin")
    assert client.patch(url, 0, data[:MiB]).status_code == 204
    after = waits_counted(server_on_master)
    assert sum(after) >= sum(before) + 2  # the creation and the commit waited, at least
    assert after[0] > before[0]  # (a loaded machine may take longer than 0.3 s, now and then)

    staged = server_on_master.data_dir / "staging" / "alice" / "waited.bin"
    pair.replica.pause()
    try:
        # The bytes are committed on the master alone (counted, logged); the finalize does
        # not move the file before a replica has its "finalizing": 503, retry later.
        response = client.patch(url, MiB, data[MiB:])
        assert response.status_code == 503, response.text
        assert response.headers["Retry-After"].isdigit()
        assert not staged.exists()
    finally:
        pair.replica.resume()
    assert waits_counted(server_on_master)[1] >= after[1] + 1
    assert server_on_master.logged("was not acknowledged by 1 replica(s) within 0.3 s")
    for _ in range(10):  # a HEAD completes the finalize (a client retries a 503)
        head = client.head(url)
        if head.status_code != 503:
            break
    assert head.status_code == 200 and head.headers["Upload-Offset"] == str(len(data))
    assert staged.read_bytes() == data


def test_a_master_demoted_under_the_server_is_503(
    pair: Pair, server_on_master: InProcessServer
) -> None:
    """A plain URL cannot follow a failover (Sentinel can): the demoted master refuses
    writes, and every request says 503, retry later."""
    client = TusTestClient(server_on_master.files_url, TOKENS["alice"])
    url = client.create_url(10, "demoted.bin")
    with pair.replica.client() as replica:
        replica.replicaof("NO", "ONE")
    with pair.master.client() as old_master:
        old_master.replicaof("127.0.0.1", pair.replica.port)
    wait_until(lambda: role(pair.master) == "slave", 10, "the demotion")
    for response in (client.patch(url, 0, b"0123456789"), client.create(5, "refused.bin")):
        assert response.status_code == 503, response.text
        assert response.headers["Retry-After"].isdigit()
