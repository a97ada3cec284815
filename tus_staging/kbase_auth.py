"""``--auth-url``: tokens validated by a KBase auth2-style service.

``GET URL`` with the token in ``Authorization`` answers ``{"user": …, "expires": ms,
"cachefor": ms}``. Answers are cached by the token's hash (never the token itself) for
``cachefor`` milliseconds and never past ``expires``. The service down → 503; a token
it refuses → 401.

The same service's ``/api/V2/me`` (beside ``/api/V2/token``) lists the identities linked
to the account; the Globus one names the user's Globus share (see globus_link.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from aiohttp import web

from protocol.errors import ServiceUnavailable, Unauthorized
from store.single_flight import shared

from .auth import check_username, token_from_request

DEFAULT_CACHE_SECONDS = 300.0
MAX_CACHED_TOKENS = 10_000


@dataclass
class CachedUser:
    user: str
    valid_until: float  # monotonic clock


def me_url(token_url: str) -> str:
    """The account URL beside a token URL: ``…/api/V2/token`` → ``…/api/V2/me``."""
    parts = urlsplit(token_url)
    folder = parts.path.rstrip("/").rpartition("/")[0]
    return urlunsplit((parts.scheme, parts.netloc, f"{folder}/me", "", ""))


class Clock(Protocol):
    """What the cache reads the time from (the ``time`` module itself, or a test's)."""

    def monotonic(self) -> float: ...

    def time(self) -> float: ...


class KBaseAuth:
    def __init__(self, url: str, timeout: float = 10.0, clock: Clock = time):
        self.url = url
        self.clock = clock
        self.me_url = me_url(url)
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._cache: dict[str, CachedUser] = {}
        self._session: aiohttp.ClientSession | None = None
        self._in_flight: dict[str, asyncio.Future[CachedUser]] = {}

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def user_for(self, request: web.Request) -> str:
        token = token_from_request(request)
        if token is None:
            raise Unauthorized("no credentials: send 'Authorization: <KBase token>'")
        return await self.user_for_token(token)

    async def user_for_token(self, token: str) -> str:
        key = hashlib.sha256(token.encode()).hexdigest()
        cached = self._cache.get(key)
        if cached is not None and cached.valid_until > self.clock.monotonic():
            return cached.user
        # Many requests with one new token ask the auth service once.
        answer = await shared(self._in_flight, key, lambda: self._ask(token))
        self._remember(key, answer)
        return answer.user

    def _remember(self, key: str, answer: CachedUser) -> None:
        if len(self._cache) >= MAX_CACHED_TOKENS:
            now = self.clock.monotonic()
            self._cache = {k: v for k, v in self._cache.items() if v.valid_until > now}
            if len(self._cache) >= MAX_CACHED_TOKENS:
                self._cache.clear()
        self._cache[key] = answer

    async def globus_usernames(self, token: str) -> list[str]:
        """The Globus user names linked to the token's account (ServiceUnavailable when
        the auth service cannot say)."""
        try:
            async with self._client().get(self.me_url, headers={"Authorization": token}) as answer:
                if answer.status != 200:
                    raise ServiceUnavailable(f"auth service answered {answer.status} for /me")
                body = await answer.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            raise ServiceUnavailable(f"auth service unreachable: {type(error).__name__}") from None
        idents = body.get("idents") if isinstance(body, dict) else None
        return [
            ident["provusername"]
            for ident in (idents if isinstance(idents, list) else [])
            if isinstance(ident, dict)
            and ident.get("provider") == "Globus"
            and isinstance(ident.get("provusername"), str)
        ]

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        return self._session

    async def _ask(self, token: str) -> CachedUser:
        try:
            async with self._client().get(self.url, headers={"Authorization": token}) as answer:
                if answer.status in (401, 403):
                    raise Unauthorized("invalid token")
                if answer.status >= 500:
                    raise ServiceUnavailable(f"auth service answered {answer.status}")
                if answer.status != 200:
                    raise Unauthorized(f"auth service refused the token ({answer.status})")
                body = await answer.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            raise ServiceUnavailable(f"auth service unreachable: {type(error).__name__}") from None
        return cached_user_from(body, self.clock)


def cached_user_from(body: object, clock: Clock = time) -> CachedUser:
    """The user and how long to trust the answer, from an auth2 token record."""
    if not isinstance(body, dict) or not isinstance(body.get("user"), str):
        raise ServiceUnavailable("auth service answered without a user name")
    try:
        user = check_username(body["user"])
    except ValueError:
        raise Unauthorized("the auth service's user name cannot name a directory") from None
    now_ms = clock.time() * 1000
    lifetime = DEFAULT_CACHE_SECONDS
    cachefor = body.get("cachefor")
    if isinstance(cachefor, int | float) and cachefor >= 0:
        lifetime = cachefor / 1000
    expires = body.get("expires")
    if isinstance(expires, int | float):
        lifetime = min(lifetime, max(0.0, (expires - now_ms) / 1000))
        if expires <= now_ms:
            raise Unauthorized("token expired")
    return CachedUser(user, clock.monotonic() + lifetime)
