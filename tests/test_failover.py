"""A Redis master killed (-9) in the middle of four uploads, on a Redis Cluster and on a
master watched by Sentinel: two servers share one data directory, the PATCHes of each
upload alternate between them; every upload completes with the right md5, no request is
answered 500 or hangs, no offset a client was told ever goes back, and a new upload works
once the replica has taken over."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from store.keys import upload_key

from .failover_uploads import (
    Upload,
    a_new_upload_works,
    check_every_upload,
    random_uploads,
    run_through_a_failover,
)
from .servers import ServerProcess, wait_until
from .topologies import RedisClusterProcesses, SentinelProcesses
from .tus_client import upload_id_of

MiB = 1 << 20


@pytest.fixture
def two_servers(tmp_path: Path, tokens_file: Path):
    """Start two servers on ``url`` sharing one data directory."""
    started: list[ServerProcess] = []

    def start(url: str) -> list[ServerProcess]:
        # The longest wait for a replica: a loaded machine must not make a replica look
        # absent (what a timed-out wait guarantees is less; tests/test_replica_wait.py).
        patient = ["--wait-replicas-timeout", "4"]
        for _ in range(2):
            server = ServerProcess(tmp_path / "shared-data", url, tokens_file, patient)
            server.start()
            started.append(server)
        return started

    yield start
    for server in started:
        server.stop()


def test_uploads_survive_a_cluster_master_killed(tmp_path: Path, two_servers) -> None:
    cluster = RedisClusterProcesses(tmp_path / "cluster")
    cluster.start()
    try:
        servers = two_servers(cluster.url)
        assert servers[0].logged("state store: Redis Cluster of 3 masters")
        uploads = random_uploads(4, 6 * MiB, seed=16)
        killed: list[int] = []

        def kill_master(uploads: list[Upload]) -> None:
            # The master holding most of the uploads' records (at least two of the four).
            masters = Counter(
                cluster.master_of(upload_key(upload_id_of(u.url))).port for u in uploads
            )
            port = masters.most_common(1)[0][0]
            node = next(node for node in cluster.nodes if node.port == port)
            node.kill()
            killed.append(port)

        run_through_a_failover(servers, uploads, kill_master)
        check_every_upload(servers[0].data_dir, uploads)
        wait_until(cluster.serving, 30, "the cluster, its master replaced")
        assert all(node.port != killed[0] for node in cluster.live_nodes())
        a_new_upload_works(servers, servers[0].data_dir)
    finally:
        cluster.stop()


def test_uploads_survive_a_sentinel_failover(tmp_path: Path, two_servers) -> None:
    topology = SentinelProcesses(tmp_path / "sentinel")
    topology.start()
    try:
        servers = two_servers(topology.url())
        assert servers[0].logged("master 'staging' of the sentinels at 127.0.0.1:")
        uploads = random_uploads(4, 6 * MiB, seed=26)
        run_through_a_failover(servers, uploads, lambda uploads: topology.master.kill())
        check_every_upload(servers[0].data_dir, uploads)
        assert topology.failed_over()
        a_new_upload_works(servers, servers[0].data_dir)
    finally:
        topology.stop()
