"""Who is asking: tokens file, or single-user mode on loopback.

Clients send ``Authorization: TOKEN``, ``Authorization: Bearer TOKEN`` or the
``kbase_session`` cookie (``kbase_session_backup`` as a fallback).
"""

from __future__ import annotations

import hmac
import logging
import os
from pathlib import Path
from typing import Protocol

from aiohttp import web

from protocol.errors import BadRequest, Unauthorized
from protocol.paths import check_name

SESSION_COOKIES = ("kbase_session", "kbase_session_backup")

log = logging.getLogger("tus_staging")


def _header_credential(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "").strip()
    if not header:
        return None
    scheme, _, rest = header.partition(" ")
    if scheme.lower() in ("bearer", "oauth") and rest.strip():
        return rest.strip()
    return header


def _cookie_credential(request: web.Request) -> str | None:
    for name in SESSION_COOKIES:
        value = request.cookies.get(name, "").strip()
        if value:
            return value
    return None


def token_from_request(request: web.Request) -> str | None:
    """The token the request carries (the Authorization header wins over the cookie)."""
    token = _header_credential(request) or _cookie_credential(request)
    if token is not None and not is_token_text(token):
        raise Unauthorized("malformed credentials: a token is printable ASCII")
    return token


def is_token_text(token: str) -> bool:
    """Tokens are printable ASCII without spaces; anything else can match no token."""
    return token.isascii() and token.isprintable() and " " not in token


def has_ambient_credentials(request: web.Request) -> bool:
    """The browser adds this request's credentials by itself: a session cookie, and no
    Authorization header (which only a script of a permitted origin can set)."""
    return _header_credential(request) is None and _cookie_credential(request) is not None


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


class TokensFileError(ValueError):
    """The tokens file cannot be used: unreadable, or a line that is not 'TOKEN USERNAME'."""


FileStamp = tuple[int, int, int]  # inode, mtime (ns), size: any replacement changes it
NO_FILE: FileStamp = (-1, -1, -1)  # the stamp of a file that cannot be found or stat'ed


class TokensFileAuth:
    """Lines of ``TOKEN USERNAME``; ``#`` starts a comment.

    The file must be valid at start. When it changes it is read again and its table
    replaces the old one whole; a version that is malformed, unreadable or missing (an
    editor between writes, a config tool mid-rename) is logged once and the last good
    table stays in use, so a bad edit never turns requests into errors.
    """

    def __init__(self, path: Path):
        self.path = path
        self._stamp = _stamp_of(path)
        self._users = read_tokens_file(path)
        self._refused: FileStamp | None = None  # a bad version, already logged

    def _reload_if_changed(self) -> None:
        problem: TokensFileError | None = None
        try:
            stamp = _stamp_of(self.path)
        except TokensFileError as error:
            stamp, problem = NO_FILE, error
        if stamp in (self._stamp, self._refused):
            return
        try:
            if problem is not None:
                raise problem
            users = read_tokens_file(self.path)
        except TokensFileError as error:
            log.warning("%s; still using the %d tokens read before", error, len(self._users))
            self._refused = stamp
            return
        self._users, self._stamp, self._refused = users, stamp, None
        log.info("tokens file %s read again: %d tokens", self.path, len(users))

    async def user_for(self, request: web.Request) -> str:
        token = token_from_request(request)
        if token is None:
            raise Unauthorized("no credentials: send 'Authorization: Bearer <token>'")
        self._reload_if_changed()
        for known, user in self._users.items():
            if hmac.compare_digest(known.encode(), token.encode()):
                return user
        raise Unauthorized("invalid token")


def _stamp_of(path: Path) -> FileStamp:
    try:
        info = os.stat(path)
    except OSError as error:
        raise TokensFileError(f"{path}: {error.strerror}") from None
    return info.st_ino, info.st_mtime_ns, info.st_size


def read_tokens_file(path: Path) -> dict[str, str]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        raise TokensFileError(f"{path}: {reason}") from None
    return parse_tokens_file(text, path)


def parse_tokens_file(text: str, source: Path | str = "tokens file") -> dict[str, str]:
    users: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2:
            raise TokensFileError(f"{source}:{number}: expected 'TOKEN USERNAME'")
        token, user = parts
        if not is_token_text(token):
            raise TokensFileError(f"{source}:{number}: a token is printable ASCII")
        if token in first_line:
            raise TokensFileError(
                f"{source}:{number}: token given before on line {first_line[token]}"
            )
        try:
            users[token] = check_username(user)
        except ValueError as error:
            raise TokensFileError(f"{source}:{number}: {error}") from None
        first_line[token] = number
    return users


class SingleUserAuth:
    """Everyone is the one local user; only ever enabled on a loopback host."""

    def __init__(self, user: str):
        self.user = check_username(user)

    async def user_for(self, request: web.Request) -> str:
        return self.user
