"""Receiving a request's body into an upload: the step every upload protocol shares."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from protocol.errors import Locked, PayloadTooLarge, ServiceUnavailable
from protocol.headers import parse_checksum
from store.checksums import ExpectedChecksum
from store.record import UploadRecord
from store.session import UploadSession

from .body_pump import BodyEnd, PumpSettings, pump_body
from .metrics import BYTES_RECEIVED, LOCK_RELEASES
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


def received_bytes(request: web.Request) -> Callable[[int], None]:
    """A commit callback that counts the committed bytes of ``request``'s body, in the
    metric and in the request's access log line."""

    def count(committed: int) -> None:
        BYTES_RECEIVED.inc(committed)
        request[BYTES] = request.get(BYTES, 0) + committed

    return count


async def receive_body(
    request: web.Request,
    services: Services,
    session: UploadSession,
    checksum: ExpectedChecksum | None = None,
    progress: Callable[[int], None] | None = None,
) -> BodyEnd:
    """Stream the body at the committed offset and commit what arrives; the session's
    record then holds the new offset. ``progress`` is told each newly committed offset."""
    config = services.config
    record = session.record
    limit = record.length if record.length is not None else config.max_size
    declared = declared_body_size(request)
    if limit is not None and declared is not None and record.offset + declared > limit:
        raise PayloadTooLarge(
            f"a body of {declared} bytes at offset {record.offset} runs past {limit}"
        )

    count = received_bytes(request)

    def committed(bytes_committed: int) -> None:
        count(bytes_committed)
        if progress is not None:
            progress(record.offset)

    # While the client is silent, the pump renews the held lock at that lock's own pace.
    listen_every = session.lock.settings.renew_every
    settings = PumpSettings(config.block_size, config.network_timeout, listen_every)
    async with session.appending(checksum, committed) as appender:
        end = await pump_body(request, appender, settings, limit, services.stopping)
        await appender.end_body(whole=end is BodyEnd.COMPLETE)
    return end


def refuse_cut_body(end: BodyEnd, record: UploadRecord) -> None:
    """A body that did not end normally: what arrived is committed; say why it stopped."""
    if end is BodyEnd.TOO_LARGE:
        if record.length is None:  # a deferred length: the server's maximum was the limit
            raise PayloadTooLarge(
                f"the body runs past the largest upload allowed; kept up to {record.offset}"
            )
        raise PayloadTooLarge(f"the body runs past Upload-Length {record.length}")
    if end is BodyEnd.RELEASED:
        LOCK_RELEASES.inc()
        raise Locked(f"another request took over upload {record.id} at {record.offset}")
    if end is BodyEnd.SHUTDOWN:
        raise ServiceUnavailable(
            f"server restarting; upload {record.id} kept at {record.offset}", retry_after=2
        )
