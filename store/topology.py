"""From a ``--redis-url`` to a client of the right kind: one Redis, a Redis Cluster, or a
master found through Sentinel.

* ``redis://``, ``rediss://``, ``unix://``: one server. A TCP node that says
  ``cluster_enabled:1`` in ``INFO cluster`` is a Redis Cluster node: the whole cluster is
  then served by redis-py's asyncio ``RedisCluster``, from that node's view of it.
* ``redis+sentinel://[[USER]:PASSWORD@]HOST[:PORT],HOST[:PORT].../MASTER[/DB]``
  (``?sentinel_password=…`` when the sentinels have a password of their own): the master
  named ``MASTER`` as the sentinels report it, asked again after every failover.

Every client gets short, bounded timeouts and retries: an unreachable Redis becomes an
error within seconds (the service answers 503), never a request that hangs.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import redis.exceptions
from redis.asyncio import Redis, RedisCluster, Sentinel
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff

RedisClient = Redis | RedisCluster

SENTINEL_SCHEME = "redis+sentinel"
SINGLE_SCHEMES = ("redis", "rediss", "unix")
SENTINEL_PORT = 26379

# A command that gets no answer for this long fails (the service answers 503). A WAIT for
# replicas blocks its connection for up to its own timeout, which must stay below this.
SOCKET_TIMEOUT = 5.0
CONNECT_TIMEOUT = 2.0
# A broken connection is retried twice, shortly (a restarted Redis, a dropped idle
# connection). A command that timed out is not: it may have run, and its caller decides.
RETRIES = 2
# The cluster client retries on its own terms (a timeout too, after reading the cluster's
# layout again): once, so that a node that stopped answering costs a command 2 socket
# timeouts, not 3.
CLUSTER_RETRIES = 1


def _retry(retries: int = RETRIES) -> Retry:
    return Retry(
        ExponentialWithJitterBackoff(base=0.05, cap=0.5),
        retries,
        supported_errors=(redis.exceptions.ConnectionError,),
    )


def client_settings(retries: int = RETRIES) -> dict[str, Any]:
    return {
        "socket_timeout": SOCKET_TIMEOUT,
        "socket_connect_timeout": CONNECT_TIMEOUT,
        "health_check_interval": 15,
        "retry": _retry(retries),
    }


# What Redis raises while it cannot serve: down, unreachable, loading, failing over (a
# cluster with a slot uncovered, a replica that was a master, a master without its link).
# The service answers these with 503 and Retry-After; they end by themselves.
UNAVAILABLE: tuple[type[Exception], ...] = (
    redis.exceptions.ConnectionError,  # also BusyLoadingError, MasterNotFoundError
    redis.exceptions.TimeoutError,
    redis.exceptions.ClusterError,  # also ClusterDownError, MasterDownError
    redis.exceptions.TryAgainError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.RedisClusterException,  # also SlotNotCoveredError
)


@contextlib.contextmanager
def closed_under_us_is_unavailable() -> Iterator[None]:
    """redis-py's cluster client closes every node's connections when it meets a cluster
    that is failing over, those in use by other requests too. A command on one of them
    then fails with whatever the half-closed connection raises (a RuntimeError from uvloop's
    closed transport, an AttributeError on a writer set to None): it is Redis being away,
    like any other ConnectionError."""
    try:
        yield
    except (RuntimeError, AttributeError) as error:
        raise redis.exceptions.ConnectionError(
            f"connection closed under a command: {type(error).__name__}: {error}"
        ) from error


class _RedisCluster(RedisCluster):
    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        with closed_under_us_is_unavailable():
            return await super().execute_command(*args, **kwargs)


class BadRedisUrl(ValueError):
    """The URL cannot name a usable Redis (the message says why)."""


@dataclass(frozen=True)
class SentinelUrl:
    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sentinel_password: str | None = field(default=None, repr=False)

    def describe(self) -> str:
        hosts = ",".join(f"{_host_text(host)}:{port}" for host, port in self.sentinels)
        return f"master {self.master!r} of the sentinels at {hosts}"


def redacted(url: str) -> str:
    """``url`` without its password (and the sentinels'), for messages and logs."""
    scheme, sep, rest = url.partition("://")
    authority, slash, tail = rest.partition("/")
    userinfo, at, hosts = authority.rpartition("@")
    if at and ":" in userinfo:
        userinfo = userinfo.partition(":")[0] + ":***"
    shown = f"{scheme}{sep}{userinfo}{at}{hosts}{slash}{tail}"
    return re.sub(r"((?:^|[?&])(?:sentinel_)?password=)[^&#]*", r"\1***", shown)


def _host_text(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def parse_sentinel_url(url: str) -> SentinelUrl:
    try:
        parts = urlsplit(url)
    except ValueError as error:
        raise BadRedisUrl(str(error)) from None
    if parts.scheme.lower() != SENTINEL_SCHEME:
        raise BadRedisUrl(f"not a {SENTINEL_SCHEME}:// URL")
    userinfo, _, hosts = parts.netloc.rpartition("@")
    username, _, password = userinfo.partition(":")
    sentinels = tuple(_host_and_port(item) for item in hosts.split(","))
    path = [unquote(piece) for piece in parts.path.split("/")[1:]]
    if not path or not path[0]:
        raise BadRedisUrl(f"{SENTINEL_SCHEME}:// needs the master's name: …/MASTERNAME")
    if len(path) > 2:
        raise BadRedisUrl("the path is /MASTERNAME or /MASTERNAME/DB")
    db = _number(path[1], "the database", 0, 2**31 - 1) if len(path) == 2 else 0
    query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=False)
    unknown = set(query) - {"sentinel_password"}
    if unknown:
        raise BadRedisUrl(f"unknown parameter(s) {', '.join(sorted(unknown))}")
    if parts.fragment:
        raise BadRedisUrl("a Redis URL has no #fragment")
    return SentinelUrl(
        sentinels=sentinels,
        master=path[0],
        db=db,
        username=unquote(username) or None,
        password=unquote(password) or None,
        sentinel_password=query["sentinel_password"][-1] if "sentinel_password" in query else None,
    )


def _host_and_port(item: str) -> tuple[str, int]:
    if item.startswith("["):
        host, bracket, rest = item[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise BadRedisUrl(f"sentinel address {item!r} is not [IPv6]:PORT")
        port_text = rest[1:]
    else:
        host, _, port_text = item.partition(":")
    if not host or any(char in host for char in "/?#@[] "):
        raise BadRedisUrl(f"sentinel address {item!r} has no valid host")
    port = _number(port_text, f"the port of {item!r}", 1, 65535) if port_text else SENTINEL_PORT
    return host, port


def _number(text: str, what: str, low: int, high: int) -> int:
    if not text.isascii() or not text.isdigit() or not low <= int(text) <= high:
        raise BadRedisUrl(f"{what} must be a number from {low} to {high}, not {text!r}")
    return int(text)


@dataclass
class StateRedis:
    """The client the store uses, what it is connected to, and how to let go of it."""

    client: RedisClient
    description: str
    sentinel: Sentinel | None = None

    @property
    def is_cluster(self) -> bool:
        return isinstance(self.client, RedisCluster)

    async def aclose(self) -> None:
        await self.client.aclose()
        if self.sentinel is not None:
            await self.sentinel.aclose()


async def connect(url: str) -> StateRedis:
    """A client for ``url``, after a first answer from it (so a wrong URL fails here, with
    a message that says why, not at the first request). Raises BadRedisUrl, or one of
    :data:`UNAVAILABLE` when nothing answers."""
    scheme = url.partition("://")[0].lower()
    if scheme == SENTINEL_SCHEME:
        return await _connect_sentinel(parse_sentinel_url(url))
    if scheme not in SINGLE_SCHEMES:
        raise BadRedisUrl(
            f"the scheme must be one of {', '.join(SINGLE_SCHEMES)} or {SENTINEL_SCHEME}, "
            f"not {scheme or 'none'!r}"
        )
    try:
        client = Redis.from_url(url, **client_settings())
    except ValueError as error:
        raise BadRedisUrl(str(error)) from None
    where = _address(client)
    try:
        cluster_enabled = (await client.info("cluster")).get("cluster_enabled") == 1
        if not cluster_enabled:
            await _refuse_replica(client, where)
    except redis.exceptions.ResponseError as error:  # a db a cluster has not, say
        await client.aclose()
        raise BadRedisUrl(f"{where}: {error}") from None
    except BaseException:
        await client.aclose()
        raise
    if not cluster_enabled:
        return StateRedis(client, f"Redis at {where}")
    await client.aclose()
    return await _connect_cluster(url, where)


async def _connect_cluster(url: str, where: str) -> StateRedis:
    try:
        cluster = _RedisCluster.from_url(url, **client_settings(CLUSTER_RETRIES))
    except (ValueError, redis.exceptions.RedisClusterException) as error:
        raise BadRedisUrl(f"Redis Cluster at {where}: {error}") from None
    try:
        await cluster.initialize()
    except BaseException:
        await cluster.aclose()
        raise
    masters, replicas = len(cluster.get_primaries()), len(cluster.get_replicas())
    return StateRedis(
        cluster, f"Redis Cluster of {masters} masters and {replicas} replicas, found at {where}"
    )


async def _connect_sentinel(address: SentinelUrl) -> StateRedis:
    settings = client_settings()
    sentinel_settings: dict[str, Any] = {
        key: value for key, value in settings.items() if key.startswith("socket_")
    }
    # No retry per sentinel: the discovery goes on to the next one, and each attempt to
    # reach the master asks them all again.
    sentinel_settings["retry"] = Retry(NoBackoff(), 0)
    if address.sentinel_password is not None:
        sentinel_settings["password"] = address.sentinel_password
    sentinel = Sentinel(
        list(address.sentinels),
        sentinel_kwargs=sentinel_settings,
        username=address.username,
        password=address.password,
        db=address.db,
        **settings,
    )
    try:
        await sentinel.discover_master(address.master)
        master = sentinel.master_for(address.master)
        try:
            await _refuse_replica(master, address.describe())
        except BaseException:
            await master.aclose()
            raise
    except BaseException:
        await sentinel.aclose()
        raise
    return StateRedis(master, address.describe(), sentinel)


async def _refuse_replica(client: Redis, where: str) -> None:
    with contextlib.suppress(redis.exceptions.NoPermissionError):
        if (await client.info("replication")).get("role") == "slave":
            raise BadRedisUrl(
                f"{where} is a replica: give its master's URL, or the sentinels' "
                f"({SENTINEL_SCHEME}://…)"
            )


def _address(client: Redis) -> str:
    settings = client.connection_pool.connection_kwargs
    if "path" in settings:
        return f"unix:{settings['path']}"
    return f"{_host_text(settings.get('host', 'localhost'))}:{settings.get('port', 6379)}"
