"""Writes that must survive a failover: on a master with replicas, the write and a WAIT
for a replica's acknowledgement, before the caller acknowledges anything to a client.

Redis replicates asynchronously: a master that dies right after answering a write may
take it with it, and the replica promoted in its place never saw it. An offset told to a
client (a 204's or a HEAD's ``Upload-Offset``) would then go back. ``WAIT n timeout``
answers once ``n`` replicas have acknowledged every write *this connection* sent before
it, so the write and its WAIT go down one connection, to the master of the key's slot, in
one round trip (a pipeline of two commands).

A master without online replicas is not waited on (``INFO replication``, looked at again
every few seconds per master). When no replica acknowledges within the timeout, the write
stands, on the master only: it is counted and logged, and the caller goes on — refusing
would undo nothing, since the master already serves the new value. Except where the
caller is about to do what a lost write would contradict (move a finalizing upload's file):
there it asks for the acknowledgement, and stops (NotReplicated, a 503) without it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import redis.exceptions
from redis.asyncio import RedisCluster
from redis.asyncio.cluster import ClusterNode, PipelineCommand
from redis.exceptions import AskError, NoScriptError

from .scripts import Arg, LuaScript
from .topology import SOCKET_TIMEOUT, RedisClient, closed_under_us_is_unavailable

log = logging.getLogger("tus_staging.store")

PRESENCE_TTL = 2.0  # seconds a master's count of online replicas is trusted
WARN_EVERY = 60.0  # seconds between two warnings of unacknowledged writes
# The WAIT blocks its connection: it must end well before the socket times out.
MAX_WAIT_TIMEOUT = SOCKET_TIMEOUT - 1.0


@dataclass(frozen=True)
class ReplicaWaitSettings:
    replicas: int = 1  # acknowledgements a write waits for (at most the online replicas)
    timeout: float = 1.0  # seconds

    def __post_init__(self) -> None:
        if self.replicas < 0:
            raise ValueError("the replicas to wait for cannot be negative")
        if not 0 < self.timeout <= MAX_WAIT_TIMEOUT:
            raise ValueError(
                f"the replica wait timeout must be above 0 and at most {MAX_WAIT_TIMEOUT} s"
            )


class NotReplicated(redis.exceptions.TimeoutError):
    """A change that must reach a replica before anything else happens did not, in time:
    Redis is not serving as it should (the service answers 503); the caller stops there."""


# Told of each waited write: seconds it took (write and WAIT), whether replicas acknowledged.
WaitObserver = Callable[[float, bool], None]


class ReplicatedWrites:
    def __init__(
        self,
        redis: RedisClient,
        settings: ReplicaWaitSettings,
        observe: WaitObserver | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.redis = redis
        self.settings = settings
        self.observe = observe
        self.clock = clock
        self._online: dict[str, tuple[int, float]] = {}  # master -> (replicas, seen at)
        self._warned_at = -WARN_EVERY

    async def script(
        self, script: LuaScript, keys: Sequence[str], args: Sequence[Arg], required: bool = False
    ) -> Any:
        """Run ``script`` on ``keys`` (one slot) and wait for the replicas."""
        command = script.command(keys, args)
        try:
            return await self.command(keys[0], command, required)
        except NoScriptError:  # a promoted replica, a restarted master: it did not run
            await self.redis.script_load(script.source)
            return await self.command(keys[0], command, required)

    async def command(self, key: str, command: Sequence[Arg], required: bool = False) -> Any:
        """Send ``command`` (whose keys share ``key``'s slot) and wait for the replicas;
        ``required``: raise NotReplicated when they did not acknowledge it in time (it
        stands on the master all the same)."""
        node = self._node_of(key)
        wanted = min(self.settings.replicas, await self._online_replicas(node))
        if wanted == 0:
            return await self.redis.execute_command(*command)
        started = self.clock()
        try:
            result, acknowledged = await self._with_wait(node, command, wanted)
            if isinstance(result, AskError):  # MOVED too: the slot has another master now
                assert isinstance(self.redis, RedisCluster)
                await self.redis.nodes_manager.initialize()
                node = self._node_of(key)
                result, acknowledged = await self._with_wait(node, command, wanted)
            if isinstance(result, Exception):
                raise result
        except BaseException:
            self._online.pop(_name(node), None)  # the topology may have changed: look again
            raise
        enough = self._observe(self.clock() - started, acknowledged, wanted)
        if required and not enough:
            raise NotReplicated(
                f"no replica acknowledged a change within {self.settings.timeout} s; "
                "it goes no further until one does"
            )
        return result

    async def _with_wait(
        self, node: ClusterNode | None, command: Sequence[Arg], wanted: int
    ) -> tuple[Any, Any]:
        """The command's answer and the WAIT's (each an exception if it failed), from one
        connection to the master."""
        wait = ("WAIT", wanted, int(self.settings.timeout * 1000))
        if node is None:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.execute_command(*command)
                pipe.execute_command(*wait)
                result, acknowledged = await pipe.execute(raise_on_error=False)
            return result, acknowledged
        pair = [PipelineCommand(0, *command), PipelineCommand(1, *wait)]
        with closed_under_us_is_unavailable():
            await node.execute_pipeline(pair)
        return pair[0].result, pair[1].result

    def _node_of(self, key: str) -> ClusterNode | None:
        """The master of ``key``'s slot on a cluster; None for a single master."""
        if isinstance(self.redis, RedisCluster):
            return self.redis.get_node_from_key(key)
        return None

    async def _online_replicas(self, node: ClusterNode | None) -> int:
        name = _name(node)
        known = self._online.get(name)
        now = self.clock()
        if known is not None and now - known[1] < PRESENCE_TTL:
            return known[0]
        if node is None:
            info = await self.redis.info("replication")
        else:
            with closed_under_us_is_unavailable():
                info = await node.execute_command("INFO", "replication")
        online = sum(
            1
            for name_, value in info.items()
            if name_.startswith("slave") and isinstance(value, dict)
            and value.get("state") == "online"
        )  # fmt: skip
        self._online[name] = (online, now)
        return online

    def _observe(self, seconds: float, acknowledged: Any, wanted: int) -> bool:
        enough = isinstance(acknowledged, int) and acknowledged >= wanted
        if self.observe is not None:
            self.observe(seconds, enough)
        if not enough and self.clock() - self._warned_at >= WARN_EVERY:
            self._warned_at = self.clock()
            log.warning(
                "a write was not acknowledged by %d replica(s) within %.1f s (%s): until a "
                "replica has it, a failover may lose it (further ones counted in "
                "tus_staging_replica_waits_total)",
                wanted, self.settings.timeout, acknowledged,
            )  # fmt: skip
        return enough


def _name(node: ClusterNode | None) -> str:
    return "" if node is None else node.name
