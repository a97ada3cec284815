"""The store's Lua scripts: loaded into Redis before requests are served, then called by
their SHA1 (EVALSHA), so that a request sends the script's digest, not its text.

A script cache is not replicated: a replica promoted by a failover, or a Redis restarted,
answers NOSCRIPT until the script is loaded there again. Each call handles that itself
(load, then call again: NOSCRIPT means the script did not run), so a failover costs one
extra round trip per script, once.

Every script touches the keys of one hash slot only (its callers pass keys that share a
``{tag}``, see store/keys.py), which keeps it valid on Redis Cluster.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from redis.exceptions import NoScriptError

from .topology import RedisClient

Arg = bytes | str | int | float


class LuaScript:
    def __init__(self, source: str):
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()
        ALL_SCRIPTS.append(self)

    def command(self, keys: Sequence[str], args: Sequence[Arg]) -> tuple[Arg, ...]:
        """The EVALSHA command line, for a caller that sends it itself (store/replication.py)."""
        return ("EVALSHA", self.sha, len(keys), *keys, *args)

    async def run(self, redis: RedisClient, keys: Sequence[str], args: Sequence[Arg] = ()) -> Any:
        try:
            return await redis.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            await redis.script_load(self.source)
            return await redis.evalsha(self.sha, len(keys), *keys, *args)


ALL_SCRIPTS: list[LuaScript] = []


async def load_scripts(redis: RedisClient) -> None:
    """Load every script (on every master of a cluster): a Redis that refuses scripts, or a
    script that does not compile, stops the server at its start rather than at a request."""
    # The modules that define scripts register them when imported.
    from . import events, locks, quotas, state_store  # noqa: F401

    for script in ALL_SCRIPTS:
        await redis.script_load(script.source)
