"""What every staging route starts from: who is asking, and the routes' shared state."""

from __future__ import annotations

import asyncio
import os
import stat
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import TypeVar

from aiohttp import web

from protocol.errors import BadRequest
from store.area import AreaPath, locate
from store.paths import ensure_dir

from .auth import token_from_request
from .globus_link import GlobusLinks
from .importer_mappings import ImporterMappings
from .kbase_auth import KBaseAuth
from .services import Services, authenticated_user, services_of
from .staging_paths import missing, relative_path

T = TypeVar("T")


@dataclass
class StagingState:
    """Per worker: the importer mappings, the Globus links, and threads of their own for
    the long jobs (walks of whole areas, archive extraction), so that those never hold
    the default executor's threads that every request's small file calls use."""

    importers: ImporterMappings | None
    globus: GlobusLinks = field(default_factory=GlobusLinks)
    walks: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(2, thread_name_prefix="walks")
    )
    archives: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(2, thread_name_prefix="archives")
    )
    # Set at shutdown: extractions stop between blocks and clean up after themselves.
    stopping: threading.Event = field(default_factory=threading.Event)

    def close(self) -> None:
        self.walks.shutdown(wait=True, cancel_futures=True)
        self.archives.shutdown(wait=True, cancel_futures=True)


STAGING = web.AppKey("staging", StagingState)


@dataclass(frozen=True)
class Caller:
    """An authenticated user, whose home exists."""

    services: Services
    state: StagingState
    user: str

    def at(self, relative: PurePosixPath) -> AreaPath:
        """Where ``relative`` lives in this user's area (400 if it would leave it)."""
        return locate(self.services.layout, self.user, relative)

    async def file_at(self, relative: PurePosixPath) -> AreaPath:
        """Where the file ``relative`` lives: 404 when nothing is there, 400 when it is
        not a file (in the KBase service's words)."""
        where = self.at(relative)
        mode = await asyncio.to_thread(stat_mode, where.staged)
        if mode is None:
            raise missing(where)
        if not stat.S_ISREG(mode):
            raise BadRequest(f"{where.user_path} is a directory not a file")
        return where

    async def walk(self, job: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.state.walks, job)


async def caller(request: web.Request) -> Caller:
    """Authenticate; make the home (race-free on first use) and, in KBase auth mode, the
    Globus link file in it."""
    services = services_of(request)
    user = await authenticated_user(request)
    home = services.layout.user_home(user)
    await asyncio.to_thread(ensure_dir, home)
    state = request.app[STAGING]
    # Only KBase's auth has a token to link Globus with: single-user mode reads no
    # credentials (a stray "Authorization: Basic …" is ignored there, as on /files/).
    if isinstance(services.auth, KBaseAuth):
        token = token_from_request(request)
        if token is not None:
            await state.globus.ensure(services.auth, user, token, home)
    return Caller(services, state, user)


def requested(request: web.Request, name: str = "path") -> PurePosixPath:
    """The path a route names, relative to the home."""
    return relative_path(request.match_info.get(name, ""))


def show_hidden(request: web.Request) -> bool:
    """``showHidden``, read as the KBase staging service reads it."""
    return request.query.get("showHidden") in ("true", "True")


async def body_field(request: web.Request, name: str) -> str | None:
    """A text field of a form body, or of a JSON object body."""
    value: object
    if request.content_type == "application/json":
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            raise BadRequest("body is not valid JSON") from None
        value = body.get(name) if isinstance(body, dict) else None
    else:
        value = (await request.post()).get(name)
    return value if isinstance(value, str) else None


def stat_mode(path: os.PathLike[str]) -> int | None:
    """``path``'s mode, links followed; None where nothing is there (as ``os.path.exists``
    judges). One ``stat`` answers both whether it exists and what it is."""
    try:
        return os.stat(path).st_mode
    except (OSError, ValueError):
        return None
