"""The objects every handler needs, built once per worker and kept on the app."""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from aiohttp import web
from redis.asyncio import Redis

from store import md5_lanes
from store.layout import DataLayout
from store.state_store import StateStore

from .auth import Authenticator
from .config import Config
from .events import Events
from .hooks import Hooks
from .metadata_service import MetadataService


@dataclass
class Services:
    config: Config
    redis: Redis
    store: StateStore
    layout: DataLayout
    auth: Authenticator
    metadata: MetadataService
    events: Events
    hooks: Hooks
    # Set when the worker is shutting down: streaming PATCHes commit what they have and stop.
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    # Block writes + hashing get threads of their own (see block_threads), so fsyncs,
    # finalizes and metadata passes on the default executor never queue behind them.
    block_executor: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(
            max_workers=block_threads(), thread_name_prefix="blocks"
        )
    )


def block_threads() -> int:
    """Threads for block hops. With md5 lanes, one per lane: a thread waiting for the
    engine costs no CPU, and only uploads whose blocks are in flight at the same time
    can share a pass (8 uploads on 2 threads left the lanes empty). Without them, as
    many as cores: more would only contend for the CPU and the GIL with the event loop."""
    return md5_lanes.lanes() or os.cpu_count() or 2


SERVICES = web.AppKey("services", Services)


def services_of(request: web.Request) -> Services:
    return request.app[SERVICES]


USER_KEY = "tus_staging.user"  # the authenticated user, for the request log
REASON_KEY = "tus_staging.reason"  # why a request was refused, for the request log


async def authenticated_user(request: web.Request) -> str:
    user = await request.app[SERVICES].auth.user_for(request)
    request[USER_KEY] = user
    return user
