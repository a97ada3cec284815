"""No request forgery: an unsafe request that carries authority the browser adds by itself,
sent by a page of another origin, is refused (403) unless ``--cors-origins`` names it.

Ambient authority is the ``kbase_session`` cookie (not an Authorization header, which only
a script the server let in through CORS can set) — and every request in single-user mode,
where being able to connect is all the authority there is. Unsafe: POST, PUT, PATCH,
DELETE; a form post or a ``no-cors`` fetch sends these without any preflight.

Who sent it: browsers name the page's origin in ``Origin`` on every cross-origin unsafe
request (forms included) and say ``Sec-Fetch-Site`` where they support it. Another port of
the same host is another origin (``same-site`` is refused too). With neither header the
request did not come from a web page (curl, tuspy, scripts) and is let through.
"""

from __future__ import annotations

from aiohttp import web

from protocol.errors import Forbidden

from .allowed_hosts import requested_origin
from .auth import has_ambient_credentials
from .cors import CorsPolicy, normalized_origin

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
SAME_ORIGIN_FETCHES = frozenset({"same-origin", "none"})  # none: the user typed or clicked it


def is_cross_origin(origin: str | None, fetch_site: str | None, own_origin: str | None) -> bool:
    """The browser says (by either header) that a page of another origin sent the request."""
    if fetch_site is not None and fetch_site.strip().lower() not in SAME_ORIGIN_FETCHES:
        return True
    if origin is None:
        return False
    sender = normalized_origin(origin)
    return sender is None or sender != own_origin


class CrossOriginGuard:
    def __init__(self, cors: CorsPolicy, single_user: bool, behind_proxy: bool):
        self.cors = cors
        self.single_user = single_user
        self.behind_proxy = behind_proxy

    def refusal(self, request: web.Request) -> Forbidden | None:
        if request.method not in UNSAFE_METHODS:
            return None
        if not (self.single_user or has_ambient_credentials(request)):
            return None
        origin = request.headers.get("Origin")
        scheme, host = requested_origin(request, self.behind_proxy)
        own = normalized_origin(f"{scheme}://{host}") if host else None
        if not is_cross_origin(origin, request.headers.get("Sec-Fetch-Site"), own):
            return None
        if origin is not None and self.cors.lists(origin):
            return None
        sender = origin if origin is not None else "another site"
        return Forbidden(
            f"cross-origin {request.method} from {sender} refused: "
            "not an origin allowed by --cors-origins"
        )
