"""Receiving a request's body into an upload: the step every upload protocol shares."""

from __future__ import annotations

from aiohttp import web

from protocol.errors import PayloadTooLarge
from protocol.headers import parse_checksum
from store.checksums import ExpectedChecksum
from store.session import UploadSession

from .body_pump import BodyEnd, PumpSettings, pump_body
from .metrics import BYTES_RECEIVED
from .request_log import BYTES
from .services import Services


def expected_checksum(request: web.Request) -> ExpectedChecksum | None:
    header = request.headers.get("Upload-Checksum")
    if header is None:
        return None
    algorithm, digest = parse_checksum(header)
    return ExpectedChecksum(algorithm, digest)


def declared_body_size(request: web.Request) -> int | None:
    """Content-Length; -1 for a chunked body; None without a body."""
    if request.content_length is not None:
        return request.content_length
    return None if not request.body_exists else -1


def has_body(request: web.Request) -> bool:
    size = declared_body_size(request)
    return size is not None and size != 0


async def receive_body(
    request: web.Request,
    services: Services,
    session: UploadSession,
    checksum: ExpectedChecksum | None = None,
) -> BodyEnd:
    """Stream the body at the committed offset and commit what arrives; the session's
    record then holds the new offset."""
    config = services.config
    record = session.record
    limit = record.length if record.length is not None else config.max_size
    declared = declared_body_size(request)
    if limit is not None and declared is not None and record.offset + declared > limit:
        raise PayloadTooLarge(
            f"a body of {declared} bytes at offset {record.offset} runs past {limit}"
        )

    def committed(count: int) -> None:
        BYTES_RECEIVED.inc(count)
        request[BYTES] = request.get(BYTES, 0) + count

    settings = PumpSettings(config.block_size, config.network_timeout, config.lock.renew_every)
    async with session.appending(checksum, committed) as appender:
        end = await pump_body(request, appender, settings, limit, services.stopping)
        await appender.end_body(whole=end is BodyEnd.COMPLETE)
    return end
