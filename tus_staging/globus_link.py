"""The Globus link file of KBase auth mode: ``.globus_id`` in each user's home.

KBase shares each home over Globus; its sharing tools read the user's Globus user name
from ``.globus_id``. When the file is missing or empty, the first Globus identity linked
to the user's KBase account (the auth service's ``/api/V2/me``) is written there, whole
or not at all (temp file + rename, so concurrent requests cannot tear it). Each user is
looked at once per ``RECHECK`` seconds, not on every request, and an auth service that
cannot answer /me does not fail the request: the link is tried again later.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path

from protocol.errors import ServiceUnavailable
from protocol.paths import GLOBUS_LINK
from store.area_files import replace_file_contents
from store.single_flight import shared

from .kbase_auth import KBaseAuth

log = logging.getLogger("tus_staging.globus")

RECHECK = 300.0  # seconds before a user's link file is looked at again
RETRY = 30.0  # seconds before asking again an auth service that could not answer
MAX_REMEMBERED = 100_000  # users whose last look is remembered


def needs_link(path: Path) -> bool:
    """Whether the link file is missing or empty. Anything else there (a folder, a link)
    is left alone: written by someone else, never written through."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return True
    return stat.S_ISREG(info.st_mode) and info.st_size == 0


class GlobusLinks:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._next_look: dict[str, float] = {}
        self._in_flight: dict[str, asyncio.Future[None]] = {}

    async def ensure(self, auth: KBaseAuth, user: str, token: str, home: Path) -> None:
        """Write ``home/.globus_id`` if it is due and missing or empty."""
        if self._next_look.get(user, 0.0) > self.clock():
            return
        await shared(self._in_flight, user, lambda: self._look(auth, user, token, home))

    async def _look(self, auth: KBaseAuth, user: str, token: str, home: Path) -> None:
        path = home / GLOBUS_LINK
        wait = RECHECK
        if await asyncio.to_thread(needs_link, path):
            try:
                names = await auth.globus_usernames(token)
            except ServiceUnavailable as error:
                log.warning("globus link of %s not checked: %s", user, error.reason)
                names, wait = [], RETRY
            if names:
                await asyncio.to_thread(replace_file_contents, path, names[0].encode())
                log.info("wrote the globus link of %s", user)
        if len(self._next_look) >= MAX_REMEMBERED:
            self._next_look.clear()
        self._next_look[user] = self.clock() + wait
