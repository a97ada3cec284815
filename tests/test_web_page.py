"""The page at GET / and its assets, without a browser: what the server sends, what the
package ships, and that the committed bundle is the build of the committed sources.

The app runs in-process on a real socket (aiohttp's test server) with a real Redis.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict

from tus_staging.app import create_app
from tus_staging.config import Config
from tus_staging.web_page import WEB_DIR, config_block, page_actions

from .js_env import npm_install
from .servers import RedisProcess

REPO = Path(__file__).parent.parent
WEB_SOURCES = REPO / "web"

AppFactory = Callable[..., Any]


class PageParser(HTMLParser):
    """What the page loads or links to (every src and href but in-page anchors), and the
    config block's text."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[tuple[str, str]] = []  # (tag, url)
        self.config_text: str | None = None
        self._in_config = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for name in ("src", "href"):
            if values.get(name) and not str(values[name]).startswith("#"):  # not in-page links
                self.urls.append((tag, str(values[name])))
        self._in_config = values.get("id") == "tus-staging-config"

    def handle_data(self, data: str) -> None:
        if self._in_config:
            self.config_text = data
            self._in_config = False


def parse_page(html: str) -> PageParser:
    parser = PageParser()
    parser.feed(html)
    return parser


@pytest.fixture
async def serve(
    tmp_path: Path, redis_proc: RedisProcess, tokens_file: Path
) -> AsyncIterator[AppFactory]:
    """Start the app in-process: serve(tokens=True, extra_routes=None, **config) -> base URL."""
    servers: list[TestServer] = []

    async def start(
        tokens: bool = True,
        extra_routes: Callable[[web.Application], None] | None = None,
        **settings: Any,
    ) -> str:
        config = Config(
            data_dir=tmp_path / "data",
            tokens_file=tokens_file if tokens else None,
            janitor_interval=0,
            **settings,
        )
        app = create_app(config, redis_proc.url)
        if extra_routes is not None:
            extra_routes(app)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return str(server.make_url("")).rstrip("/")

    yield start
    for server in servers:
        await server.close()


async def get(url: str, **headers: str) -> tuple[int, CIMultiDict[str], bytes]:
    async with ClientSession() as session, session.get(url, headers=headers) as response:
        return response.status, response.headers.copy(), await response.read()


def page_config(html: bytes) -> dict[str, Any]:
    text = parse_page(html.decode()).config_text
    assert text is not None, "no config block in the page"
    return json.loads(text)


# --- the page and its assets ------------------------------------------------------------------


async def test_page_and_assets_come_with_a_strict_policy(serve: AppFactory) -> None:
    base = await serve()
    status, headers, body = await get(f"{base}/")
    assert status == 200
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    policy = dict(
        directive.strip().split(" ", 1)
        for directive in headers["Content-Security-Policy"].split(";")
    )
    assert policy["default-src"] == "'none'"
    assert policy["script-src"] == "'self'"  # no inline script, nothing from elsewhere
    assert policy["frame-ancestors"] == "'none'"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Cache-Control"] == "no-store"

    # Everything the page loads is one of its own assets, by a relative URL.
    urls = [url for _, url in parse_page(body.decode()).urls]
    assert urls and all(url.startswith("assets/") for url in urls), urls
    kinds = set()
    for url in urls:
        status, asset_headers, asset = await get(f"{base}/{url}")
        assert status == 200, url
        assert asset, url
        assert asset_headers["X-Content-Type-Options"] == "nosniff"
        assert "immutable" in asset_headers["Cache-Control"]
        kinds.add(asset_headers["Content-Type"].split(";")[0])
        # Cached by its ETag too.
        again, _, empty = await get(f"{base}/{url}", **{"If-None-Match": asset_headers["ETag"]})
        assert (again, empty) == (304, b"")
    assert {"text/javascript", "text/css", "image/svg+xml", "text/plain"} <= kinds


@pytest.mark.parametrize(
    "name", ["nothing.js", "..%2Fapp.py", "..%2F..%2Fweb_page.py", "%2Fetc%2Fpasswd", ".hidden"]
)
async def test_unknown_asset_names_are_404_with_a_reason(serve: AppFactory, name: str) -> None:
    base = await serve()
    status, headers, body = await get(f"{base}/assets/{name}")
    assert status == 404
    assert headers["Content-Type"].startswith("text/plain")
    assert body.decode().startswith("no asset named")
    assert body.count(b"\n") == 1


async def test_config_tells_the_page_what_this_server_offers(serve: AppFactory) -> None:
    base = await serve(base_path="/uploads/", max_size=5_000_000)
    _, _, body = await get(f"{base}/")
    assert page_config(body) == {
        "tusEndpoint": "/uploads/",
        "signIn": "token",
        "maxSize": 5_000_000,
        "actions": {"decompress": True},
    }


def test_the_page_offers_an_action_only_where_its_route_is() -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response()

    router = web.UrlDispatcher()
    router.add_patch("/mv/{path:[\\s\\S]+}", handler)
    assert page_actions(router) == {"decompress": False}
    router.add_patch("/decompress/{path:[\\s\\S]+}", handler)
    assert page_actions(router) == {"decompress": True}


async def test_single_user_mode_needs_no_sign_in(serve: AppFactory) -> None:
    base = await serve(tokens=False)
    _, _, body = await get(f"{base}/")
    assert page_config(body)["signIn"] == "none"


@given(st.dictionaries(st.text(max_size=20), st.text(max_size=40), max_size=5))
def test_config_values_cannot_leave_the_data_block(config: dict[str, str]) -> None:
    block = config_block(config)
    parsed = parse_page(block)
    assert parsed.config_text is not None
    assert json.loads(parsed.config_text) == config
    # The block ends where it should: no "</script" nor comment opener from a value.
    assert block.lower().count("</script") == 1
    assert "<!--" not in block


# --- packaging and the build ---------------------------------------------------------------------


def test_an_install_ships_the_page_and_every_asset_it_names(tmp_path: Path) -> None:
    """What setuptools installs (build_py: the files a wheel holds) has the page and assets."""
    build_lib = tmp_path / "build-lib"
    done = subprocess.run(
        [sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(build_lib)],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    installed = build_lib / "tus_staging" / "web"
    html = (installed / "index.html").read_text()
    for _, url in parse_page(html).urls:
        assert (installed / url).is_file(), f"{url} is named by the page but not installed"
    licences = [path.name for path in (installed / "assets").glob("licenses-*.txt")]
    assert len(licences) == 1


@pytest.fixture(scope="module")
def web_node_modules() -> Path:
    return npm_install(WEB_SOURCES)


def test_committed_bundle_is_the_build_of_the_sources(
    web_node_modules: Path, tmp_path: Path
) -> None:
    """web/build.mjs on the committed sources gives the committed tus_staging/web/ exactly:
    no edit of web/src is left unbuilt, and no built file was edited by hand."""
    out = tmp_path / "web"
    done = subprocess.run(
        ["node", str(WEB_SOURCES / "build.mjs"), "--out", str(out)],
        cwd=WEB_SOURCES, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr

    def files(root: Path) -> dict[str, bytes]:
        return {
            str(path.relative_to(root)): path.read_bytes()
            for path in sorted(root.rglob("*"))
            if path.is_file()
        }

    built, committed = files(out), files(WEB_DIR)
    assert sorted(built) == sorted(committed), "run `make web` and commit tus_staging/web/"
    for name, content in built.items():
        assert content == committed[name], f"{name} differs: run `make web`"


def test_licences_name_every_bundled_package() -> None:
    (licences,) = (WEB_DIR / "assets").glob("licenses-*.txt")
    text = licences.read_text()
    lock = json.loads((WEB_SOURCES / "package-lock.json").read_text())
    for package in ("@uppy/core", "@uppy/dashboard", "@uppy/tus", "tus-js-client", "preact"):
        version = lock["packages"][f"node_modules/{package}"]["version"]
        assert re.search(rf"^{re.escape(package)} {re.escape(version)} \(", text, re.M), package
