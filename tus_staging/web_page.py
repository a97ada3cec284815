"""The web page at ``GET /`` and its assets at ``GET /assets/{name}``.

The files are built by web/build.mjs into tus_staging/web/ and ship in the package: the
page loads nothing from another origin and works offline. The server writes the page's
config (tus endpoint, sign-in mode, optional routes) into the HTML as a JSON data block,
so the page never guesses what this server offers.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from protocol.errors import NotFound, quoted

from .auth import SingleUserAuth
from .error_middleware import Handler
from .services import services_of

WEB_DIR = Path(__file__).parent / "web"
ASSETS_DIR = WEB_DIR / "assets"

# The page's only script and style come from /assets/; the config block is data (a
# non-script type), which script-src does not govern. Uppy's thumbnails are blob: URLs.
CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data: blob:",
    "connect-src 'self'",
    "form-action 'self'",
    "base-uri 'none'",
    "frame-ancestors 'none'",
])  # fmt: skip
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers that predate it
    "Referrer-Policy": "no-referrer",
}
CONTENT_TYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
    ".txt": "text/plain",
}
# Asset names carry a hash of their content: a name never changes meaning.
ASSET_CACHE = "public, max-age=31536000, immutable"
CONFIG_SLOT = '<script type="application/json" id="tus-staging-config">{}</script>'
# Routes the page offers an action for only when this server has them.
OPTIONAL_ROUTES = {"decompress": ("PATCH", "/decompress/")}
_ASSET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str
    etag: str


@functools.cache
def page_template() -> str:
    html = (WEB_DIR / "index.html").read_text(encoding="utf-8")
    if html.count(CONFIG_SLOT) != 1:
        raise RuntimeError(f"{WEB_DIR / 'index.html'} must hold the config slot once")
    return html


@functools.cache
def assets() -> dict[str, Asset]:
    """Every built asset, read once: a few hundred KiB, served from memory."""
    found = {}
    for path in sorted(ASSETS_DIR.iterdir()):
        content_type = CONTENT_TYPES.get(path.suffix)
        if content_type is None or not path.is_file():
            continue
        body = path.read_bytes()
        etag = hashlib.sha256(body).hexdigest()[:32]
        found[path.name] = Asset(body, content_type, f'"{etag}"')
    return found


def page_actions(router: web.UrlDispatcher) -> dict[str, bool]:
    """Which of the optional routes ``router`` has: the actions the page offers."""
    routes = [
        (route.method, route.resource.canonical)
        for route in router.routes()
        if route.resource is not None
    ]
    return {
        name: any(had == method and path.startswith(prefix) for had, path in routes)
        for name, (method, prefix) in OPTIONAL_ROUTES.items()
    }


def page_config(request: web.Request, actions: dict[str, bool]) -> dict[str, Any]:
    services = services_of(request)
    config = services.config
    return {
        "tusEndpoint": config.base_path,
        "signIn": "none" if isinstance(services.auth, SingleUserAuth) else "token",
        "maxSize": config.max_size,
        "actions": actions,
    }


def config_block(config: dict[str, Any]) -> str:
    # "<", ">" and "&" escaped: no value can close the element or open a comment.
    data = json.dumps(config, separators=(",", ":"))
    data = data.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return CONFIG_SLOT.replace("{}", data)


def page_handler(actions: dict[str, bool]) -> Handler:
    """``GET /``: the page, its config block offering ``actions``."""

    async def page(request: web.Request) -> web.Response:
        html = page_template().replace(CONFIG_SLOT, config_block(page_config(request, actions)))
        return web.Response(
            text=html,
            content_type="text/html",
            headers={**SECURITY_HEADERS, "Cache-Control": "no-store"},
        )

    return page


async def asset(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    found = assets().get(name) if _ASSET_NAME.fullmatch(name) else None
    if found is None:
        raise NotFound(f"no asset named {quoted(name)}")
    headers = {**SECURITY_HEADERS, "Cache-Control": ASSET_CACHE, "ETag": found.etag}
    if found.etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    return web.Response(
        body=found.body, content_type=found.content_type, charset="utf-8", headers=headers
    )


def add_routes(router: web.UrlDispatcher) -> None:
    """The page and its assets. Added after every other route: the page offers an action
    for each optional route that ``router`` has by then."""
    router.add_get("/", page_handler(page_actions(router)))
    router.add_get("/assets/{name}", asset)
