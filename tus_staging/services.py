"""The objects every handler needs, built once per worker and kept on the app."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiohttp import web
from redis.asyncio import Redis

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


SERVICES = web.AppKey("services", Services)


def services_of(request: web.Request) -> Services:
    return request.app[SERVICES]


USER_KEY = "tus_staging.user"  # the authenticated user, for the request log


async def authenticated_user(request: web.Request) -> str:
    user = await request.app[SERVICES].auth.user_for(request)
    request[USER_KEY] = user
    return user
