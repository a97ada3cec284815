"""HTTP hooks: ``--hook-pre-create`` may refuse an upload; ``--hook-post-finish`` is told
of every finished upload, with retries.

pre-create: ``POST URL`` with JSON ``{user, filename, destination, length, metadata}``.
A 2xx answer lets the upload be created; any other status is passed to the client with
the hook's message (JSON ``{"message": …}`` or plain text), 4xx/5xx as given. A hook that
cannot be reached refuses the upload (503): the operator asked for a gate.

post-finish: ``POST URL`` with the finished event as JSON, in the background, retried
with exponential backoff; the client's request never waits for it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import aiohttp
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from protocol.errors import ServiceUnavailable, TusError

log = logging.getLogger("tus_staging.hooks")

HOOK_TIMEOUT = aiohttp.ClientTimeout(total=10)


class HookFailed(Exception):
    pass


class Hooks:
    def __init__(
        self,
        pre_create_url: str | None,
        post_finish_url: str | None,
        attempts: int = 6,
        backoff: float = 0.5,
    ):
        self.pre_create_url = pre_create_url
        self.post_finish_url = post_finish_url
        self.attempts = attempts
        self.backoff = backoff
        self._session: aiohttp.ClientSession | None = None
        self._background: set[asyncio.Task[None]] = set()

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=HOOK_TIMEOUT)
        return self._session

    async def close(self) -> None:
        if self._background:
            await asyncio.wait(self._background, timeout=15)
        if self._session is not None:
            await self._session.close()

    async def pre_create(self, payload: dict[str, Any]) -> None:
        if self.pre_create_url is None:
            return
        try:
            async with self._client().post(self.pre_create_url, json=payload) as answer:
                if 200 <= answer.status < 300:
                    return
                text = await answer.text()
                message = _message_of(text, answer.content_type)
        except (aiohttp.ClientError, TimeoutError):
            raise ServiceUnavailable("the pre-create hook is unreachable") from None
        status = answer.status if 400 <= answer.status < 600 else 403
        raise TusError(message or f"refused by the pre-create hook ({answer.status})",
                       status=status)  # fmt: skip

    async def post_finish(self, event: dict[str, Any]) -> None:
        if self.post_finish_url is None:
            return
        task = asyncio.create_task(self._deliver(event))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _deliver(self, event: dict[str, Any]) -> None:
        assert self.post_finish_url is not None
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(self.attempts),
                wait=wait_exponential(multiplier=self.backoff, max=60),
                retry=retry_if_exception_type((aiohttp.ClientError, TimeoutError, HookFailed)),
                reraise=True,
            ):
                with attempt:
                    async with self._client().post(self.post_finish_url, json=event) as answer:
                        if answer.status >= 300:
                            raise HookFailed(f"post-finish hook answered {answer.status}")
        except Exception:
            log.exception("post-finish hook gave up on upload %s", event.get("uploadId"))


def _message_of(text: str, content_type: str) -> str:
    if content_type == "application/json":
        try:
            body = json.loads(text)
        except ValueError:
            return text.strip()
        if isinstance(body, dict) and isinstance(body.get("message"), str):
            return body["message"]
    return text.strip()
