"""The upload routes: each serves tus 1.0.0 and the IETF draft on the same uploads, the
protocol told by the request itself (protocol/ietf_fields.is_ietf_request)."""

from __future__ import annotations

from aiohttp import web

from protocol.ietf_fields import is_ietf_request

from . import ietf_endpoint, tus_endpoint, upload_file
from .error_middleware import Handler


def by_protocol(tus: Handler, ietf: Handler) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        return await (ietf if is_ietf_request(request.headers) else tus)(request)

    return handle


OPTIONS = by_protocol(tus_endpoint.options, ietf_endpoint.options)
CREATE = by_protocol(tus_endpoint.create, ietf_endpoint.create)
HEAD = by_protocol(tus_endpoint.head, ietf_endpoint.offset_retrieval)
PATCH = by_protocol(tus_endpoint.patch, ietf_endpoint.append)
DELETE = by_protocol(tus_endpoint.delete, ietf_endpoint.cancel)
# A finished upload's bytes; for the draft's clients, its offset (as HEAD).
GET = by_protocol(upload_file.get, ietf_endpoint.offset_retrieval)
POST_WITH_OVERRIDE = by_protocol(tus_endpoint.post_with_override, ietf_endpoint.post_with_override)
# They stream their bodies through the body pump, which times the client itself.
STREAMING = (CREATE, PATCH, POST_WITH_OVERRIDE)


def add_routes(router: web.UrlDispatcher, base_path: str) -> None:
    base = base_path.rstrip("/")
    router.add_route("OPTIONS", f"{base}/", OPTIONS)
    router.add_route("OPTIONS", f"{base}/{{upload_id}}", OPTIONS)
    router.add_post(f"{base}/", CREATE)
    router.add_route("HEAD", f"{base}/{{upload_id}}", HEAD)
    router.add_route("GET", f"{base}/{{upload_id}}", GET)
    router.add_patch(f"{base}/{{upload_id}}", PATCH)
    router.add_delete(f"{base}/{{upload_id}}", DELETE)
    router.add_post(f"{base}/{{upload_id}}", POST_WITH_OVERRIDE)
