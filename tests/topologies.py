"""Replicated Redis topologies on loopback, from the ``redis-server`` on PATH: a Redis
Cluster (masters with a replica each) and a master with a replica watched by three
sentinels. Timeouts are short, so that a killed master is replaced within seconds."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import redis

from tus_staging.embedded_redis import redis_server_binary

from .servers import RedisProcess, free_port, wait_until

# Seconds without an answer before a node or master is taken for down (a failover then
# takes two to three times this). Short, but above the stalls of a loaded 2-core machine.
DOWN_AFTER_MS = 1000
SENTINEL_MASTER = "staging"
# A master syncs a new replica at once (by default it waits 5 s for more to come along).
SYNC_AT_ONCE = ["--repl-diskless-sync-delay", "0"]


def replicas_online(node: RedisProcess) -> int:
    with node.client() as client:
        info = client.info("replication")
    return sum(
        1
        for name, value in info.items()
        if name.startswith("slave") and isinstance(value, dict) and value["state"] == "online"
    )


def role(node: RedisProcess) -> str:
    with node.client() as client:
        return str(client.info("replication")["role"])


class RedisClusterProcesses:
    """``masters`` masters with ``replicas`` replicas each, made by ``redis-cli --cluster
    create``."""

    def __init__(self, directory: Path, masters: int = 3, replicas: int = 1):
        self.nodes = [
            RedisProcess(
                directory / f"node-{index}",
                port=free_port(),
                extra_args=[
                    "--cluster-enabled",
                    "yes",
                    # The bus port is chosen too: port + 10000 may be past 65535, or taken.
                    "--cluster-port",
                    str(free_port()),
                    "--cluster-config-file",
                    str(directory / f"node-{index}" / "nodes.conf"),
                    "--cluster-node-timeout",
                    str(DOWN_AFTER_MS),
                    # A replica always stands in for its master, however long ago it synced.
                    "--cluster-replica-validity-factor",
                    "0",
                    *SYNC_AT_ONCE,
                ],
            )
            for index in range(masters * (1 + replicas))
        ]
        self.replicas = replicas

    @property
    def url(self) -> str:
        """Any node's URL (the first one's)."""
        return self.nodes[0].url

    def live_nodes(self) -> list[RedisProcess]:
        return [node for node in self.nodes if node.process is not None]

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        cli = shutil.which("redis-cli") or str(Path(redis_server_binary()).with_name("redis-cli"))
        subprocess.run(
            [
                cli, "--cluster", "create",
                *(f"127.0.0.1:{node.port}" for node in self.nodes),
                "--cluster-replicas", str(self.replicas), "--cluster-yes",
            ],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        wait_until(self.healthy, 60, "redis cluster (every slot served, replicas in sync)")

    def healthy(self) -> bool:
        """Every live node sees every slot served, and every live master has its replicas
        in sync (CLUSTER SLOTS may list them only seconds later: gossip)."""
        for node in self.live_nodes():
            with node.client() as client:
                if client.cluster("info").get("cluster_state") != "ok":
                    return False
        masters = [node for node in self.live_nodes() if role(node) == "master"]
        return all(replicas_online(master) >= self.replicas for master in masters)

    def master_of(self, key: str) -> RedisProcess:
        """The node serving ``key``'s slot now."""
        for node in self.live_nodes():
            with node.client() as client:
                slot = client.cluster("keyslot", key)
                for start, end, master, *_ in client.execute_command("CLUSTER SLOTS"):
                    if start <= slot <= end:
                        port = int(master[1])
                        return next(node for node in self.nodes if node.port == port)
        raise LookupError(f"no live node knows the slot of {key!r}")

    def serving(self) -> bool:
        """Every live node sees every slot served by a live master (after a master died:
        by its replica)."""
        live = {node.port for node in self.live_nodes()}
        for node in self.live_nodes():
            try:
                with node.client() as client:
                    if client.cluster("info").get("cluster_state") != "ok":
                        return False
                    slots = client.execute_command("CLUSTER SLOTS")
            except redis.ConnectionError:
                return False
            if any(int(master[1]) not in live for _, _, master, *_ in slots):
                return False
        return True

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


class SentinelProcess:
    """``redis-server CONF --sentinel`` watching one master (the config file is its own:
    sentinels rewrite theirs)."""

    def __init__(self, directory: Path, master_port: int, quorum: int, password: str = ""):
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.config = directory / "sentinel.conf"
        self.config.write_text(
            f"port {self.port}\n"
            "bind 127.0.0.1\n"
            f"dir {directory}\n"
            f"logfile {directory / 'sentinel.log'}\n"
            f"sentinel monitor {SENTINEL_MASTER} 127.0.0.1 {master_port} {quorum}\n"
            f"sentinel down-after-milliseconds {SENTINEL_MASTER} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {SENTINEL_MASTER} 10000\n"
            + (f"sentinel auth-pass {SENTINEL_MASTER} {password}\n" if password else "")
        )
        self.process: subprocess.Popen[bytes] | None = None

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=5)

    def start(self) -> None:
        self.process = subprocess.Popen(
            [redis_server_binary(), str(self.config), "--sentinel"], stdin=subprocess.DEVNULL
        )
        wait_until(self._pings, 15, "sentinel")

    def _pings(self) -> bool:
        try:
            with self.client() as client:
                return bool(client.ping())
        except redis.ConnectionError:
            return False

    def master(self) -> dict:
        with self.client() as client:
            return dict(client.sentinel_master(SENTINEL_MASTER))

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(15)
        self.process = None


class SentinelProcesses:
    """A master, one replica, three sentinels (quorum 2); with ``password``, the master and
    the replica require it (the sentinels do not)."""

    def __init__(self, directory: Path, password: str = ""):
        self.password = password
        auth = ["--requirepass", password, "--masterauth", password] if password else []
        self.master = RedisProcess(
            directory / "master",
            port=free_port(),
            extra_args=[*SYNC_AT_ONCE, *auth],
            password=password,
        )
        self.replica = RedisProcess(
            directory / "replica",
            port=free_port(),
            extra_args=["--replicaof", "127.0.0.1", str(self.master.port), *auth],
            password=password,
        )
        self.sentinels = [
            SentinelProcess(directory / f"sentinel-{index}", self.master.port, 2, password)
            for index in range(3)
        ]

    def url(self, db: int = 0) -> str:
        hosts = ",".join(f"127.0.0.1:{sentinel.port}" for sentinel in self.sentinels)
        auth = f":{self.password}@" if self.password else ""
        return f"redis+sentinel://{auth}{hosts}/{SENTINEL_MASTER}" + (f"/{db}" if db else "")

    def start(self) -> None:
        self.master.start()
        self.replica.start()
        for sentinel in self.sentinels:
            sentinel.start()
        wait_until(self.healthy, 60, "sentinels that know each other and the replica")

    def healthy(self) -> bool:
        """The replica is in sync and every sentinel knows the two others and the replica:
        a failover can be agreed on."""
        if replicas_online(self.master) < 1:
            return False
        for sentinel in self.sentinels:
            state = sentinel.master()
            if int(state["num-other-sentinels"]) < 2 or int(state["num-slaves"]) < 1:
                return False
        return True

    def failed_over(self) -> bool:
        """The replica is the master now, and the sentinels say so."""
        if role(self.replica) != "master":
            return False
        return all(int(s.master()["port"]) == self.replica.port for s in self.sentinels)

    def stop(self) -> None:
        for sentinel in self.sentinels:
            sentinel.stop()
        self.replica.stop()
        self.master.stop()
