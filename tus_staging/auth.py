"""Who is asking: tokens file, or single-user mode on loopback.

Clients send ``Authorization: TOKEN``, ``Authorization: Bearer TOKEN`` or the
``kbase_session`` cookie (``kbase_session_backup`` as a fallback).
"""

from __future__ import annotations

import hmac
import os
from pathlib import Path
from typing import Protocol

from aiohttp import web

from protocol.errors import BadRequest, Unauthorized
from protocol.paths import check_name

SESSION_COOKIES = ("kbase_session", "kbase_session_backup")


def token_from_request(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "").strip()
    if header:
        scheme, _, rest = header.partition(" ")
        if scheme.lower() in ("bearer", "oauth") and rest.strip():
            return rest.strip()
        return header
    for name in SESSION_COOKIES:
        value = request.cookies.get(name, "").strip()
        if value:
            return value
    return None


class Authenticator(Protocol):
    async def user_for(self, request: web.Request) -> str:
        """The user name; raises Unauthorized (401) when the request has no valid token."""
        ...


def check_username(user: str) -> str:
    """A user name becomes a directory name: it must be one safe path component."""
    try:
        check_name(user, field="user name")
    except BadRequest as error:
        raise ValueError(f"user name {user!r} cannot name a directory: {error.reason}") from None
    return user


class TokensFileAuth:
    """Lines of ``TOKEN USERNAME``; ``#`` starts a comment. Re-read when the file changes."""

    def __init__(self, path: Path):
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._users: dict[str, str] = {}
        self._reload_if_changed()

    def _reload_if_changed(self) -> None:
        info = os.stat(self.path)
        stamp = (info.st_mtime_ns, info.st_size)
        if stamp != self._stamp:
            self._users = parse_tokens_file(self.path.read_text(encoding="utf-8"), self.path)
            self._stamp = stamp

    async def user_for(self, request: web.Request) -> str:
        token = token_from_request(request)
        if token is None:
            raise Unauthorized("no credentials: send 'Authorization: Bearer <token>'")
        self._reload_if_changed()
        for known, user in self._users.items():
            if hmac.compare_digest(known.encode(), token.encode()):
                return user
        raise Unauthorized("invalid token")


def parse_tokens_file(text: str, source: Path | str = "tokens file") -> dict[str, str]:
    users: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2:
            raise ValueError(f"{source}:{number}: expected 'TOKEN USERNAME'")
        token, user = parts
        try:
            users[token] = check_username(user)
        except ValueError as error:
            raise ValueError(f"{source}:{number}: {error}") from None
    return users


class SingleUserAuth:
    """Everyone is the one local user; only ever enabled on a loopback host."""

    def __init__(self, user: str):
        self.user = check_username(user)

    async def user_for(self, request: web.Request) -> str:
        return self.user
