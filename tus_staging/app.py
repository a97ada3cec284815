"""The aiohttp application: routes, middlewares, and the per-worker services."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from collections.abc import AsyncIterator

from aiohttp import web

from store.liveness import Liveness
from store.metadata import MetadataService
from store.scripts import load_scripts
from store.topology import StateRedis, connect
from store.uploads import Uploads

from . import staging_api, upload_routes, web_page
from .allowed_hosts import AllowedHosts
from .auth import Authenticator, SingleUserAuth, TokensFileAuth
from .body_deadline import body_deadline
from .config import Config
from .connection_cap import DEFAULT_PER_CLIENT, CappedRunner
from .cors import CorsPolicy
from .cross_origin import CrossOriginGuard
from .error_middleware import errors_to_responses, refusing, tus_resumable_header
from .health import healthz, metrics
from .hooks import Hooks
from .janitor import janitor_loop
from .kbase_auth import KBaseAuth
from .metrics import store_observers
from .request_log import log_requests
from .services import SERVICES, Services

READ_BUFSIZE = 2 * 1024 * 1024


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
        except OSError:
            return False
        return bool(addresses) and all(ipaddress.ip_address(a).is_loopback for a in addresses)


def is_single_user(config: Config) -> bool:
    return config.tokens_file is None and config.auth_url is None


def make_authenticator(config: Config) -> Authenticator:
    if config.tokens_file is not None:
        return TokensFileAuth(config.tokens_file)
    if config.auth_url is not None:
        return KBaseAuth(config.auth_url)
    if not is_loopback_host(config.host):
        raise SystemExit(
            f"refusing to serve {config.host} without authentication: "
            "give --tokens-file or --auth-url, or bind to a loopback address"
        )
    return SingleUserAuth(config.single_user)


async def connect_state_store(url: str) -> StateRedis:
    """The Redis of ``url``, with the store's scripts loaded: ready for requests."""
    state = await connect(url)
    try:
        await load_scripts(state.client)
    except BaseException:
        await state.aclose()
        raise
    return state


def edge_middlewares(config: Config) -> list[web.Middleware]:
    """What every request passes before a handler, outermost first: logged; for a name
    served here; not forged by another origin; CORS; errors as answers; a body deadline."""
    single_user = is_single_user(config)
    cors = CorsPolicy(config.cors_origins, config.cors_credentials, not single_user)
    hosts = AllowedHosts(config.host, config.allowed_hosts, config.behind_proxy)
    guard = CrossOriginGuard(cors, single_user, config.behind_proxy)
    check_hosts = single_user or bool(config.allowed_hosts.strip())
    return [
        log_requests,
        *([refusing(hosts.refusal)] if check_hosts else []),
        refusing(guard.refusal),  # before CORS: a refusal carries no CORS headers
        cors.middleware(),
        tus_resumable_header,
        errors_to_responses,
        body_deadline(config.network_timeout, upload_routes.STREAMING),
    ]


def make_runner(app: web.Application, config: Config, shutdown_timeout: float) -> web.AppRunner:
    """The runner every site of a process is served by, counting connections per client."""
    limit = config.max_client_connections
    if limit is None:
        limit = 0 if config.behind_proxy else DEFAULT_PER_CLIENT
    settings = {
        "keepalive_timeout": config.keepalive_timeout,
        "shutdown_timeout": shutdown_timeout,
        "access_log": None,  # tus_staging.access logs each request (request_log.py)
    }
    if limit > 0:
        return CappedRunner(app, limit, **settings)
    return web.AppRunner(app, **settings)


def create_app(config: Config, redis_url: str) -> web.Application:
    app = web.Application(
        middlewares=edge_middlewares(config),
        client_max_size=1024**2,  # request.post()/json() only; PATCH bodies are streamed
        # Let a body buffer up to a few MiB before the socket is paused: fewer pause/resume
        # cycles while a block is being written and hashed (memory stays bounded).
        handler_args={"read_bufsize": READ_BUFSIZE},
    )
    layout = config.layout
    layout.create_dirs()
    auth = make_authenticator(config)

    async def services_context(app: web.Application) -> AsyncIterator[None]:
        state = await connect_state_store(redis_url)
        redis = state.client
        liveness = Liveness(redis)
        await liveness.start()
        metadata = MetadataService(redis, config.digest_names)
        hooks = Hooks(config.hook_pre_create, config.hook_post_finish)
        uploads = Uploads(
            redis,
            layout,
            config.store_settings,
            observers=store_observers(),
            on_finished=hooks.post_finish,
        )
        app[SERVICES] = Services(config, uploads, layout, auth, metadata, hooks)
        janitor = None
        if config.janitor_interval > 0:
            janitor = asyncio.create_task(
                janitor_loop(uploads, config.janitor_interval, config.stuck_finalize_age)
            )
        yield
        if janitor is not None:
            janitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await janitor
        await hooks.close()
        await liveness.stop()
        await state.aclose()
        uploads.close()
        if isinstance(auth, KBaseAuth):
            await auth.close()

    async def on_shutdown(app: web.Application) -> None:
        # Listening has stopped; streaming PATCHes now commit what they have and answer.
        app[SERVICES].stopping.set()

    app.cleanup_ctx.append(services_context)
    app.on_shutdown.append(on_shutdown)
    upload_routes.add_routes(app.router, config.base_path)  # tus and the IETF draft
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    staging_api.setup(app, config)
    web_page.add_routes(app.router)
    return app
