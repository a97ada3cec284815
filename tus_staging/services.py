"""The objects every handler needs, built once per worker and kept on the app."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiohttp import web

from store.layout import DataLayout
from store.metadata import MetadataService
from store.uploads import Uploads

from .auth import Authenticator
from .config import Config
from .hooks import Hooks


@dataclass
class Services:
    config: Config
    uploads: Uploads
    layout: DataLayout
    auth: Authenticator
    metadata: MetadataService
    hooks: Hooks
    # Set when the worker is shutting down: streaming PATCHes commit what they have and stop.
    stopping: asyncio.Event = field(default_factory=asyncio.Event)


SERVICES = web.AppKey("services", Services)


def services_of(request: web.Request) -> Services:
    return request.app[SERVICES]


USER_KEY = web.RequestKey("user", str)  # the authenticated user, for the request log
REASON_KEY = web.RequestKey("reason", str)  # why a request was refused, for the request log


async def authenticated_user(request: web.Request) -> str:
    user = await request.app[SERVICES].auth.user_for(request)
    request[USER_KEY] = user
    return user
