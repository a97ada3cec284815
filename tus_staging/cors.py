"""CORS for browser clients (Uppy, tus-js-client) on another origin.

Preflights are answered here for every path, before routing; actual responses get the
allow-origin and the tus headers a browser script may read.
"""

from __future__ import annotations

from aiohttp import web

from .error_middleware import Handler

ALLOWED_METHODS = "POST, GET, HEAD, PATCH, DELETE, OPTIONS"
ALLOWED_HEADERS = ", ".join([
    "Authorization", "Content-Type", "Origin", "X-Requested-With", "X-Request-ID",
    "X-HTTP-Method-Override", "Tus-Resumable", "Upload-Length", "Upload-Offset",
    "Upload-Metadata", "Upload-Defer-Length", "Upload-Concat", "Upload-Checksum",
    "Upload-Expires", "Upload-Draft-Interop-Version", "Upload-Complete",
])  # fmt: skip
EXPOSED_HEADERS = ", ".join([
    "Location", "Upload-Offset", "Upload-Length", "Upload-Metadata", "Upload-Defer-Length",
    "Upload-Concat", "Upload-Expires", "Tus-Resumable", "Tus-Version", "Tus-Extension",
    "Tus-Max-Size", "Tus-Checksum-Algorithm", "Retry-After",
])  # fmt: skip
PREFLIGHT_MAX_AGE = "86400"


class CorsPolicy:
    def __init__(self, origins: str, credentials: bool):
        self.any_origin = origins.strip() == "*"
        self.origins = {o.strip().rstrip("/") for o in origins.split(",") if o.strip()}
        self.credentials = credentials
        if credentials and self.any_origin:
            # Cookies sent from any web page would make every site an authenticated client.
            raise ValueError("--cors-credentials needs explicit --cors-origins, not '*'")

    def allow_origin(self, origin: str) -> str | None:
        """The Access-Control-Allow-Origin value for ``origin``, or None (not allowed)."""
        if self.any_origin and not self.credentials:
            return "*"
        if self.any_origin or origin in self.origins:
            return origin  # credentials forbid "*": echo the origin, vary on it
        return None

    def headers_for(self, origin: str) -> dict[str, str]:
        allowed = self.allow_origin(origin)
        if allowed is None:
            return {}
        headers = {"Access-Control-Allow-Origin": allowed, "Vary": "Origin"}
        if self.credentials:
            headers["Access-Control-Allow-Credentials"] = "true"
        return headers

    def middleware(self) -> web.Middleware:
        @web.middleware
        async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
            origin = request.headers.get("Origin")
            if origin is None:
                return await handler(request)
            is_preflight = request.method == "OPTIONS" and (
                "Access-Control-Request-Method" in request.headers
            )
            if is_preflight:
                headers = self.headers_for(origin)
                if headers:
                    headers.update({
                        "Access-Control-Allow-Methods": ALLOWED_METHODS,
                        "Access-Control-Allow-Headers": ALLOWED_HEADERS,
                        "Access-Control-Max-Age": PREFLIGHT_MAX_AGE,
                    })  # fmt: skip
                return web.Response(status=204, headers=headers)
            try:
                response = await handler(request)
            except web.HTTPException as error:
                error.headers.update(self._actual_headers(origin))
                raise
            response.headers.update(self._actual_headers(origin))
            return response

        return cors

    def _actual_headers(self, origin: str) -> dict[str, str]:
        headers = self.headers_for(origin)
        if headers:
            headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
        return headers
