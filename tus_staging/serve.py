"""Running the server (and the janitor by hand), with an embedded Redis when none is given."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterator

from aiohttp import web

from protocol.errors import one_line
from store import md5_lanes, sinks
from store.digest import digest_backend
from store.janitor import JanitorReport, janitor_pass
from store.topology import UNAVAILABLE, BadRedisUrl, redacted
from store.uploads import Uploads

from .app import (
    connect_state_store,
    create_app,
    edge_middlewares,
    make_authenticator,
    make_runner,
)
from .config import Config
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


SHUTDOWN_TIMEOUT = 30.0  # seconds streaming requests get to commit and answer at a stop


def serve(config: Config) -> int:
    if config.workers < 1:
        raise SystemExit("--workers must be at least 1")
    try:  # refuse a bad auth, CORS, host or store setup before anything starts
        make_authenticator(config)
        edge_middlewares(config)
        config.store_settings  # noqa: B018 - checks the store's settings
    except (ValueError, OSError) as error:
        raise SystemExit(f"tus-staging: {error}") from None
    md5_lanes.set_enabled(not config.no_md5_lanes)  # before gunicorn forks its workers
    if config.md5_kernel:
        try:
            md5_lanes.use_kernel_setting(config.md5_kernel)
        except ValueError as error:
            raise SystemExit(f"--md5-kernel: {error}") from None
    log.info("md5: %s", md5_lanes.describe())
    sinks.set_direct(not config.no_direct_io)  # before gunicorn forks its workers
    log.info(
        "digest states: %s; partial files: %s",
        digest_backend(),
        sinks.describe(config.layout.upload_dir),
    )
    with redis_for(config) as url:
        log.info("state store: %s", check_redis(url))
        if config.workers > 1:
            from .workers import run_workers

            run_workers(config, url)
            return 0
        app = create_app(config, url)
        log.info(
            "tus endpoint http://%s:%d%s, data in %s",
            config.host, config.port, config.base_path, config.data_dir.absolute(),
        )  # fmt: skip
        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            runner.run(serve_until_stopped(app, config))
    return 0


def check_redis(url: str) -> str:
    """What ``url`` is connected to (scripts loaded); a wrong or unreachable URL stops the
    server now with one line that says why, before it listens or forks a worker."""

    async def probe() -> str:
        state = await connect_state_store(url)
        await state.aclose()
        return state.description

    try:
        return asyncio.run(probe())
    except BadRedisUrl as error:
        raise SystemExit(f"tus-staging: --redis-url {redacted(url)}: {error}") from None
    except UNAVAILABLE as error:
        cause = one_line(f"{type(error).__name__}: {error}", 200)
        message = f"tus-staging: no usable Redis at --redis-url {redacted(url)}: {cause}"
        raise SystemExit(message) from None


async def serve_until_stopped(app: web.Application, config: Config) -> None:
    """Listen until SIGTERM or SIGINT, then stop gracefully (streaming PATCHes commit)."""
    runner = make_runner(app, config, SHUTDOWN_TIMEOUT)
    await runner.setup()
    try:
        await web.TCPSite(runner, config.host, config.port).start()
        await stop_signal()
    finally:
        await runner.cleanup()


async def stop_signal() -> None:
    loop = asyncio.get_running_loop()
    stopped = asyncio.Event()
    signals = (signal.SIGTERM, signal.SIGINT)
    for number in signals:
        loop.add_signal_handler(number, stopped.set)
    try:
        await stopped.wait()
    finally:
        for number in signals:
            loop.remove_signal_handler(number)


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop where available: its socket reads cost the hot path less than asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def cleanup(config: Config) -> int:
    with redis_for(config) as url:
        check_redis(url)
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
    state = await connect_state_store(url)
    uploads = Uploads(state.client, config.layout, config.store_settings)
    try:
        return await janitor_pass(uploads, min_finalize_age=config.stuck_finalize_age)
    finally:
        uploads.close()
        await state.aclose()
