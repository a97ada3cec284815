"""The aiohttp application: routes, middlewares, and the per-worker services."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from collections.abc import AsyncIterator

from aiohttp import web
from redis.asyncio import Redis

from store.liveness import Liveness
from store.state_store import StateStore

from . import staging_api, tus_endpoint
from .auth import Authenticator, SingleUserAuth, TokensFileAuth
from .config import Config
from .cors import CorsPolicy
from .error_middleware import errors_to_responses, tus_resumable_header
from .events import Events
from .health import healthz, metrics
from .hooks import Hooks
from .janitor import janitor_loop
from .kbase_auth import KBaseAuth
from .metadata_service import MetadataService
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
    return SingleUserAuth(config.single_user or "local")


def redis_client(url: str) -> Redis:
    # Bounded timeouts: a Redis outage must become a 503, not a hung request.
    return Redis.from_url(
        url, socket_timeout=10, socket_connect_timeout=5, health_check_interval=15
    )


def create_app(config: Config, redis_url: str) -> web.Application:
    cors = CorsPolicy(config.cors_origins, config.cors_credentials)
    app = web.Application(
        middlewares=[log_requests, cors.middleware(), tus_resumable_header, errors_to_responses],
        client_max_size=1024**2,  # request.post()/json() only; PATCH bodies are streamed
        # Let a body buffer up to a few MiB before the socket is paused: fewer pause/resume
        # cycles while a block is being written and hashed (memory stays bounded).
        handler_args={"read_bufsize": READ_BUFSIZE},
    )
    layout = config.layout
    layout.create_dirs()
    auth = make_authenticator(config)

    async def services_context(app: web.Application) -> AsyncIterator[None]:
        redis = redis_client(redis_url)
        liveness = Liveness(redis)
        await liveness.start()
        metadata = MetadataService(redis, config.digest_names)
        hooks = Hooks(config.hook_pre_create, config.hook_post_finish)
        events = Events(redis, hooks.post_finish)
        app[SERVICES] = Services(
            config, redis, StateStore(redis), layout, auth, metadata, events, hooks
        )
        janitor = None
        if config.janitor_interval > 0:
            janitor = asyncio.create_task(
                janitor_loop(
                    redis,
                    layout,
                    config.lock,
                    config.janitor_interval,
                    config.stuck_finalize_age,
                    events,
                )
            )
        yield
        if janitor is not None:
            janitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await janitor
        await hooks.close()
        await liveness.stop()
        await redis.aclose()
        app[SERVICES].block_executor.shutdown(wait=True)
        if isinstance(auth, KBaseAuth):
            await auth.close()

    async def on_shutdown(app: web.Application) -> None:
        # Listening has stopped; streaming PATCHes now commit what they have and answer.
        app[SERVICES].stopping.set()

    app.cleanup_ctx.append(services_context)
    app.on_shutdown.append(on_shutdown)
    base = config.base_path.rstrip("/")
    app.router.add_route("OPTIONS", f"{base}/", tus_endpoint.options)
    app.router.add_route("OPTIONS", f"{base}/{{upload_id}}", tus_endpoint.options)
    app.router.add_post(f"{base}/", tus_endpoint.create)
    app.router.add_route("HEAD", f"{base}/{{upload_id}}", tus_endpoint.head)
    app.router.add_patch(f"{base}/{{upload_id}}", tus_endpoint.patch)
    app.router.add_delete(f"{base}/{{upload_id}}", tus_endpoint.delete)
    app.router.add_post(f"{base}/{{upload_id}}", tus_endpoint.post_with_override)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    staging_api.setup(app, config)
    return app
