"""CORS for browser clients (Uppy, tus-js-client) on another origin.

None unless origins are given (``--cors-origins``). Preflights are answered here for every
path, before routing; actual responses get the allow-origin and the tus headers a browser
script may read. ``*`` (any origin) needs authentication: without it any web page could
use the server as its own.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from aiohttp import web

from .error_middleware import Handler

ALLOWED_METHODS = "POST, GET, HEAD, PATCH, DELETE, OPTIONS"
ALLOWED_HEADERS = ", ".join([
    "Authorization", "Content-Type", "Origin", "X-Requested-With", "X-Request-ID",
    "X-HTTP-Method-Override", "Tus-Resumable", "Upload-Length", "Upload-Offset",
    "Upload-Metadata", "Upload-Defer-Length", "Upload-Concat", "Upload-Checksum",
    "Upload-Expires", "Upload-Draft-Interop-Version", "Upload-Complete", "Content-Disposition",
])  # fmt: skip
EXPOSED_HEADERS = ", ".join([
    "Location", "Upload-Offset", "Upload-Length", "Upload-Metadata", "Upload-Defer-Length",
    "Upload-Concat", "Upload-Expires", "Tus-Resumable", "Tus-Version", "Tus-Extension",
    "Tus-Max-Size", "Tus-Checksum-Algorithm", "Retry-After", "Upload-Complete", "Upload-Limit",
    "Upload-Draft-Interop-Version", "Accept-Patch", "Content-Disposition", "Content-Range",
    "Accept-Ranges",
])  # fmt: skip
PREFLIGHT_MAX_AGE = "86400"
DEFAULT_PORTS = {"http": 80, "https": 443}


def normalized_origin(text: str) -> str | None:
    """``scheme://host[:port]`` as browsers serialize an origin (lower case, no default
    port), or None when ``text`` is not an http(s) origin (``null``, a path, garbage)."""
    try:
        parts = urlsplit(text.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username:
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment or "\\" in text:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    if port is not None and port != DEFAULT_PORTS[parts.scheme]:
        host = f"{host}:{port}"
    return f"{parts.scheme}://{host}"


class CorsPolicy:
    def __init__(self, origins: str, credentials: bool, authenticated: bool = True):
        self.any_origin = origins.strip() == "*"
        self.origins: set[str] = set()
        for given in (o for o in origins.split(",") if o.strip() and not self.any_origin):
            origin = normalized_origin(given)
            if origin is None:
                raise ValueError(
                    f"--cors-origins: {given.strip()!r} is not an origin (http(s)://host[:port])"
                )
            self.origins.add(origin)
        self.credentials = credentials
        if self.any_origin and not authenticated:
            # Every web page the local user visits could then read and change their files.
            raise ValueError(
                "--cors-origins '*' needs authentication (--tokens-file or --auth-url); "
                "list the origins of the pages that may use this server instead"
            )
        if credentials and not self.origins:
            # With '*', cookies sent from any web page would make every site an
            # authenticated client; with no origins at all the flag would do nothing.
            raise ValueError("--cors-credentials needs explicit --cors-origins, not '*'")

    def lists(self, origin: str) -> bool:
        """``origin`` is one of those given by name (``*`` names none)."""
        return normalized_origin(origin) in self.origins

    def allow_origin(self, origin: str) -> str | None:
        """The Access-Control-Allow-Origin value for ``origin``, or None (not allowed)."""
        if self.any_origin and not self.credentials:
            return "*"
        if self.any_origin or self.lists(origin):
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
