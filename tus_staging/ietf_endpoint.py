"""The IETF resumable-upload endpoint (draft-ietf-httpbis-resumable-upload, interop 6, 7
and 8) on the tus endpoint's routes, over the same uploads.

A request of the draft (protocol/ietf_fields.is_ietf_request) comes here instead of to the
tus handlers. Each handler reads like the draft's server behaviour: read the fields (a
value that is not the structured field the draft defines is ignored), open the caller's
upload through the store, act through the session, answer with the upload's state. Only
``Upload-Complete: ?1`` completes an upload: content that reaches the length without it
leaves the upload open. The completing request is answered with the staged file's
metadata record (JSON), and an empty ``?1`` append to a completed upload gets that answer
again. Refusals are problem details (RFC 9457) that carry the upload's offset once the
upload is known. What differs between interop versions is asked of protocol/interop.py.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from protocol.content_disposition import FIELD as CONTENT_DISPOSITION
from protocol.content_disposition import disposition_filename
from protocol.destination import upload_destination
from protocol.errors import BadRequest, TusError
from protocol.headers import overridden
from protocol.ietf_fields import (
    INTEROP_VERSION,
    PARTIAL_UPLOAD,
    UPLOAD_COMPLETE,
    UPLOAD_LENGTH,
    UPLOAD_LIMIT,
    UPLOAD_OFFSET,
    IetfRequest,
    check_content_fits,
    check_partial_upload_type,
    indicated_length,
    length_to_record,
)
from protocol.interop import SERVED, Interop
from protocol.lifecycle import UploadState, length_at_completion
from protocol.metadata import decode_metadata, encode_metadata
from protocol.problems import MEDIA_TYPE as PROBLEM_JSON
from protocol.problems import (
    CompletedUpload,
    InconsistentLength,
    MismatchingOffset,
    problem_document,
)
from protocol.structured_fields import serialize_item
from store.record import UploadRecord
from store.session import UploadSession

from .body_pump import BodyEnd
from .error_middleware import refusal_of
from .interim import send_interim
from .metrics import IETF_REQUESTS
from .receive import declared_body_size, has_body, receive_body, refuse_cut_body
from .request_log import UPLOAD_ID
from .services import REASON_KEY, Services, authenticated_user, services_of
from .tus_endpoint import hook_payload, upload_url

PROTOCOL = "ietf"
UPLOAD_RESUMPTION_SUPPORTED = 104


@dataclass
class Exchange:
    """One request of the draft, and what is known of its upload so far."""

    request: web.Request
    services: Services
    fields: IetfRequest
    transfers: bool = False  # a creation or an append: its answers say Upload-Complete
    record: UploadRecord | None = None  # once known, a refusal carries its offset
    completed: bool = False  # a ?1 request arrived whole: what follows is its processing

    @property
    def interop(self) -> Interop:
        return self.fields.interop

    def limit(self, record: UploadRecord | None) -> str:
        """Upload-Limit: the server's maximum size and the upload's remaining lifetime (with
        no upload yet, the lifetime a new one starts with)."""
        config = self.services.config
        lifetime: float | None = None
        if record is None:
            lifetime = config.expire_after
        elif record.status is UploadState.PARTIAL and record.expires is not None:
            lifetime = record.expires - self.services.uploads.clock()
        return self.interop.upload_limit(max_size=config.max_size, lifetime=lifetime)

    def state(self, record: UploadRecord) -> dict[str, str]:
        """The upload's state, as offset retrieval and every transfer answer it."""
        headers = {
            UPLOAD_OFFSET: str(record.offset),
            UPLOAD_COMPLETE: serialize_item(record.status is UploadState.COMPLETE),
            UPLOAD_LIMIT: self.limit(record),
        }
        if record.length is not None:
            headers[UPLOAD_LENGTH] = str(record.length)
        return headers

    def interim(self, headers: dict[str, str]) -> None:
        """A 104 (Upload Resumption Supported), to a client of a version spoken here."""
        version = self.fields.version
        if self.interop.sends_interim and version is not None:
            send_interim(
                self.request,
                UPLOAD_RESUMPTION_SUPPORTED,
                "Upload Resumption Supported",
                {INTEROP_VERSION: str(version), **headers},
            )


ExchangeHandler = Callable[[Exchange], Awaitable[web.StreamResponse]]
RequestHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _version_label(fields: IetfRequest) -> str:
    if fields.version is None:
        return "none"
    return str(fields.version) if fields.version in SERVED else "other"


def ietf_handler(handler: ExchangeHandler) -> RequestHandler:
    """A handler of the draft's: reads the fields once, counts the request by version, and
    answers every refusal as problem details."""

    @functools.wraps(handler)
    async def handle(request: web.Request) -> web.StreamResponse:
        fields = IetfRequest.of(request.headers)
        IETF_REQUESTS.labels(_version_label(fields)).inc()
        exchange = Exchange(request, services_of(request), fields)
        try:
            return await handler(exchange)
        except Exception as error:
            refusal = refusal_of(error, request)
            if refusal is None:
                raise
            return _refusal(exchange, refusal)

    return handle


def _refusal(exchange: Exchange, error: TusError) -> web.Response:
    exchange.request[REASON_KEY] = error.reason  # the request log says why
    headers = dict(error.headers)
    record = exchange.record
    if record is not None and record.status is not UploadState.GONE:
        headers[UPLOAD_OFFSET] = str(record.offset)
    if exchange.transfers:
        headers[UPLOAD_COMPLETE] = serialize_item(exchange.completed)
    body = json.dumps(problem_document(error)).encode()
    return web.Response(status=error.status, body=body, headers=headers, content_type=PROBLEM_JSON)


# -- the draft's requests -------------------------------------------------------------------


async def _options(exchange: Exchange) -> web.Response:
    headers = {UPLOAD_LIMIT: exchange.limit(None), "Accept-Patch": PARTIAL_UPLOAD}
    return web.Response(status=204, headers=headers)


async def _create(exchange: Exchange) -> web.Response:
    request, services, fields = exchange.request, exchange.services, exchange.fields
    exchange.transfers = True
    complete = fields.required_complete()
    user = await authenticated_user(request)
    length = indicated_length(fields.length, complete, declared_body_size(request), 0)
    check_content_fits(length, 0, declared_body_size(request))
    metadata, raw_metadata = _creation_metadata(request)
    destination = upload_destination(metadata)
    if length is not None:
        services.uploads.check_size(length)
    await services.hooks.pre_create(hook_payload(user, destination, length, metadata, None))
    record = await services.uploads.create(
        user, length=length, metadata=raw_metadata, destination=destination, protocol=PROTOCOL
    )
    exchange.record = record
    request[UPLOAD_ID] = record.id
    location = upload_url(request, services, record.id)
    exchange.interim({"Location": location, UPLOAD_LIMIT: exchange.limit(record)})
    if complete or has_body(request):
        async with services.uploads.session(user, record.id) as session:
            exchange.record = session.record
            await _transfer(exchange, session, complete)
            record = session.record
    return _transfer_answer(exchange, record, 201, 201, {"Location": location})


def _creation_metadata(request: web.Request) -> tuple[dict[str, bytes], str]:
    """The new upload's metadata: Upload-Metadata (tus's encoding, which tus-js-client
    sends), its file name replaced by Content-Disposition's when that gives one; and the
    metadata as an Upload-Metadata value, which tus HEAD requests are answered with."""
    raw = request.headers.get("Upload-Metadata", "")
    metadata = decode_metadata(raw)
    disposition = request.headers.get(CONTENT_DISPOSITION)
    name = disposition_filename(disposition) if disposition is not None else None
    if name is not None:
        # Undecodable bytes stay undecodable, for the path policy to refuse with a reason.
        metadata["filename"] = name.encode("utf-8", "surrogatepass")
        raw = encode_metadata(metadata)
    if "filename" not in metadata and "name" not in metadata:
        raise BadRequest(
            f"a file name is required: {CONTENT_DISPOSITION}: inline; filename*=UTF-8''…, "
            "or Upload-Metadata filename"
        )
    return metadata, raw


async def _append(exchange: Exchange) -> web.Response:
    request, services, fields = exchange.request, exchange.services, exchange.fields
    exchange.transfers = True
    content_length = declared_body_size(request)
    check_partial_upload_type(request.headers.get("Content-Type"), has_body(request))
    offset = fields.required_offset()
    complete = fields.required_complete()
    user = await authenticated_user(request)
    async with services.uploads.session(user, request.match_info["upload_id"]) as session:
        record = exchange.record = session.record
        if record.status is UploadState.COMPLETE:
            return _append_to_completed(exchange, record, offset, complete)
        if offset != record.offset:
            raise MismatchingOffset(record.offset, offset)
        indicated = indicated_length(fields.length, complete, content_length, offset)
        length = length_to_record(record.length, indicated, offset)
        if length is not None:
            await session.declare_length(length)
        check_content_fits(record.length, offset, content_length)
        await _transfer(exchange, session, complete)
    return _transfer_answer(exchange, record, exchange.interop.incomplete_append_status, 200)


def _append_to_completed(
    exchange: Exchange, record: UploadRecord, offset: int, complete: bool
) -> web.Response:
    """Nothing changes a completed upload; an empty ?1 append gets the completion's answer
    again (a client that lost it asks so)."""
    if has_body(exchange.request):
        raise exchange.interop.content_after_completion(
            f"upload {record.id} is complete: it takes no more content"
        )
    if not complete:
        raise CompletedUpload(f"upload {record.id} is complete")
    if offset != record.offset:
        raise MismatchingOffset(record.offset, offset)
    return _completion_answer(200, record, exchange.state(record))


async def _transfer(exchange: Exchange, session: UploadSession, complete: bool) -> None:
    """Receive the content at the upload's offset; a ?1 request whose content arrived whole
    completes the upload (its length is then its offset) and stages it."""
    request = exchange.request
    record = session.record
    end = BodyEnd.COMPLETE
    if has_body(request):
        progress = functools.partial(_progress, exchange)
        end = await receive_body(request, exchange.services, session, progress=progress)
    if end is BodyEnd.TOO_LARGE and record.length is not None:
        raise InconsistentLength(f"the content runs past the upload's length {record.length}")
    refuse_cut_body(end, record)
    if complete and end is BodyEnd.COMPLETE:
        length = length_at_completion(record.length, record.offset)
        if record.length is None:
            await session.declare_length(length)
        exchange.completed = True
        await session.finish()


def _progress(exchange: Exchange, offset: int) -> None:
    if not exchange.request.content.at_eof():  # else the final answer is about to say it
        exchange.interim({UPLOAD_OFFSET: str(offset)})


def _transfer_answer(
    exchange: Exchange,
    record: UploadRecord,
    incomplete_status: int,
    complete_status: int,
    extra: dict[str, str] | None = None,
) -> web.Response:
    headers = {**(extra or {}), **exchange.state(record)}
    if not exchange.completed:
        return web.Response(status=incomplete_status, headers=headers)
    return _completion_answer(complete_status, record, headers)


def _completion_answer(status: int, record: UploadRecord, headers: dict[str, str]) -> web.Response:
    """What processing the upload produced: the staged file's metadata record."""
    if not record.result:  # a concatenation's partial upload: nothing is staged
        return web.Response(status=status, headers=headers)
    return web.Response(
        status=status, body=record.result, headers=headers, content_type="application/json"
    )


async def _offset_retrieval(exchange: Exchange) -> web.Response:
    _refuse_state_fields(exchange, (UPLOAD_OFFSET, UPLOAD_COMPLETE, UPLOAD_LENGTH))
    request, services = exchange.request, exchange.services
    user = await authenticated_user(request)
    record = await services.uploads.current(user, request.match_info["upload_id"])
    exchange.record = record
    return web.Response(status=204, headers={**exchange.state(record), "Cache-Control": "no-store"})


async def _cancel(exchange: Exchange) -> web.Response:
    _refuse_state_fields(exchange, (UPLOAD_OFFSET, UPLOAD_COMPLETE))
    request, services = exchange.request, exchange.services
    user = await authenticated_user(request)
    upload_id = request.match_info["upload_id"]
    async with services.uploads.session(user, upload_id, terminating=True) as session:
        exchange.record = session.record
        await session.terminate()
    return web.Response(status=204)


def _refuse_state_fields(exchange: Exchange, names: tuple[str, ...]) -> None:
    if not exchange.interop.refuses_state_fields:
        return
    for name in names:
        if name in exchange.request.headers:
            raise BadRequest(
                f"{name} is not allowed on {exchange.request.method} ({exchange.interop.draft})"
            )


async def _method_override(exchange: Exchange) -> web.Response:
    request = exchange.request
    table = {"PATCH": _append, "DELETE": _cancel, "HEAD": _offset_retrieval}
    return await overridden(request.method, request.headers, table)(exchange)


options = ietf_handler(_options)
create = ietf_handler(_create)
append = ietf_handler(_append)
offset_retrieval = ietf_handler(_offset_retrieval)  # HEAD, and GET of the draft's clients
cancel = ietf_handler(_cancel)
post_with_override = ietf_handler(_method_override)
