"""A request body, from the socket into an upload: chunks gathered into blocks.

Bytes arrive in the socket's chunk sizes; they are gathered into blocks of about
``block_size`` (kept as they came: no copy into one buffer) and each block goes to the
upload's appender (store/appender.py), which writes, hashes and commits it. While one
block is in the executor the next one is read from the network.

The body ends for one of the reasons of :class:`BodyEnd`; whatever the reason, what
arrived is kept: the appender commits it (a checksummed body aside, which is kept only
whole and verified).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from enum import Enum

import aiohttp
from aiohttp import web

from store.appender import Appender


class BodyEnd(Enum):
    COMPLETE = "complete"  # the body ended normally
    DISCONNECTED = "disconnected"  # the client went away mid-body
    TIMED_OUT = "timed out"  # no byte for network_timeout seconds
    RELEASED = "released"  # another request asked for the lock
    TOO_LARGE = "too large"  # the body ran past the upload's length
    SHUTDOWN = "shutdown"  # the worker is stopping


@dataclass(frozen=True)
class PumpSettings:
    block_size: int
    network_timeout: float  # seconds a client may stay silent mid-body
    listen_every: float  # seconds between lock renewals while the client is silent


class Block:
    """Socket chunks gathered for one executor hop."""

    __slots__ = ("chunks", "size")

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.size = 0

    def add(self, chunk: bytes) -> None:
        if chunk:
            self.chunks.append(chunk)
            self.size += len(chunk)


def salvage_buffered(content: aiohttp.StreamReader) -> bytes:
    """The bytes that reached the server before its client vanished.

    On a disconnect aiohttp marks the body as failed, and from then on its reads raise
    before returning what is already buffered. Those bytes were received (the kernel
    acknowledged them) and must be kept; lifting the error for one read_nowait() is the
    only way to reach them (aiohttp 3.9-3.14; tests/test_interrupted_patch.py guards it).
    """
    error = content.exception()
    content._exception = None
    try:
        return content.read_nowait()
    except Exception:
        return b""
    finally:
        content._exception = error


async def pump_body(
    request: web.Request,
    appender: Appender,
    settings: PumpSettings,
    limit: int | None,
    stopping: asyncio.Event,
) -> BodyEnd:
    """Stream the body into ``appender`` until it ends; ``limit`` is the highest offset
    the body may reach (None: unbounded). Errors propagate (the appender then keeps what
    was written before them)."""
    content = request.content
    block = Block()
    received = appender.offset  # offset the body has reached, including the block
    last_byte_at = time.monotonic()

    def asked_to_stop() -> BodyEnd | None:
        if stopping.is_set():
            return BodyEnd.SHUTDOWN
        if appender.release_requested:
            return BodyEnd.RELEASED
        return None

    while True:
        try:
            async with asyncio.timeout(settings.listen_every):
                # One buffered chunk at a time: readany() would join all buffered chunks
                # into a new bytes object (a copy of the whole stream).
                chunk, at_http_chunk_end = await content.readchunk()
            if not chunk and at_http_chunk_end and not content.is_eof():
                continue  # a chunked-encoding boundary, not the end of the body
        except TimeoutError:
            # A quiet client: keep the lock alive and listen for release requests.
            await appender.keep_alive()
            if (end := asked_to_stop()) is not None:
                await appender.append(block.chunks)
                return end
            if time.monotonic() - last_byte_at >= settings.network_timeout:
                await appender.append(block.chunks)
                return BodyEnd.TIMED_OUT
            if block.size and appender.checksum is None:
                # Quiet time is free time: make what arrived durable now.
                await appender.append(block.chunks)
                block = Block()
                await appender.commit()
            continue
        except (aiohttp.ClientPayloadError, ConnectionError, asyncio.IncompleteReadError):
            rest = salvage_buffered(content)
            if limit is not None:
                rest = rest[: limit - received]
            block.add(rest)
            await appender.append(block.chunks)
            return BodyEnd.DISCONNECTED
        if not chunk:
            await appender.append(block.chunks)
            return BodyEnd.COMPLETE
        last_byte_at = time.monotonic()
        if limit is not None and received + len(chunk) > limit:
            # Keep what fits; the rest is refused (413) and never written.
            block.add(chunk[: limit - received])
            await appender.append(block.chunks)
            return BodyEnd.TOO_LARGE
        received += len(chunk)
        block.add(chunk)
        if block.size >= settings.block_size:
            await appender.append(block.chunks)
            block = Block()
            if (end := asked_to_stop()) is not None:
                return end


async def pump_part(
    part: aiohttp.BodyPartReader, appender: Appender, block_size: int, limit: int | None
) -> BodyEnd:
    """Stream one part of a multipart body into ``appender`` (whose lock is renewed in the
    background: a part cannot be left mid-read). A silent client is the edge's body
    deadline's (its TimeoutError propagates: 408)."""
    block = Block()
    received = appender.offset
    while True:
        try:
            chunk = await part.read_chunk(block_size)
        except (aiohttp.ClientPayloadError, ConnectionError, asyncio.IncompleteReadError):
            return BodyEnd.DISCONNECTED
        if not chunk:
            await appender.append(block.chunks)
            return BodyEnd.COMPLETE
        if limit is not None and received + len(chunk) > limit:
            return BodyEnd.TOO_LARGE
        received += len(chunk)
        block.add(chunk)
        if block.size >= block_size:
            await appender.append(block.chunks)
            block = Block()
