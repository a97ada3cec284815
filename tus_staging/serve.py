"""Running the server (and the janitor by hand), with an embedded Redis when none is given."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator

from aiohttp import web

from store import md5_lanes
from store.janitor import JanitorReport, janitor_pass
from store.uploads import Uploads

from .app import create_app, make_authenticator, redis_client
from .config import Config
from .cors import CorsPolicy
from .embedded_redis import EmbeddedRedis

log = logging.getLogger("tus_staging")


@contextlib.contextmanager
def redis_for(config: Config) -> Iterator[str]:
    """The configured Redis URL, or an embedded Redis started (and stopped) around the block."""
    if config.redis_url:
        yield config.redis_url
        return
    embedded = EmbeddedRedis(config.embedded_redis_dir)
    url = embedded.start()
    log.info("embedded redis at %s (append-only, %s)", url, config.embedded_redis_dir)
    try:
        yield url
    finally:
        embedded.stop()


def serve(config: Config) -> int:
    if config.workers < 1:
        raise SystemExit("--workers must be at least 1")
    make_authenticator(config)  # refuse a bad auth or CORS setup before anything starts
    try:
        CorsPolicy(config.cors_origins, config.cors_credentials)
    except ValueError as error:
        raise SystemExit(str(error)) from None
    md5_lanes.set_enabled(not config.no_md5_lanes)  # before gunicorn forks its workers
    log.info("md5: %s", md5_lanes.describe())
    with redis_for(config) as url:
        if config.workers > 1:
            from .workers import run_workers

            run_workers(config, url)
            return 0
        app = create_app(config, url)
        log.info(
            "tus endpoint http://%s:%d%s, data in %s",
            config.host, config.port, config.base_path, config.data_dir.absolute(),
        )  # fmt: skip
        web.run_app(
            app,
            loop=new_event_loop(),
            host=config.host,
            port=config.port,
            print=None,
            keepalive_timeout=config.keepalive_timeout,
            shutdown_timeout=30,
            access_log=None,  # tus_staging.access logs each request (request_log.py)
        )
    return 0


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop where available: its socket reads cost the hot path less than asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def cleanup(config: Config) -> int:
    with redis_for(config) as url:
        report = asyncio.run(_cleanup(config, url))
    if report is None:
        print("another janitor pass is running; try again later")
        return 1
    print(
        f"removed {report.expired} expired upload(s), completed {report.finalized} "
        f"interrupted finalize(s), {report.failed} could not be handled (see the log)"
    )
    return 0


async def _cleanup(config: Config, url: str) -> JanitorReport | None:
    redis = redis_client(url)
    uploads = Uploads(redis, config.layout, config.store_settings)
    try:
        return await janitor_pass(uploads, min_finalize_age=config.stuck_finalize_age)
    finally:
        uploads.close()
        await redis.aclose()
