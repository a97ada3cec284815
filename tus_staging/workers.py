"""``--workers N``: gunicorn's master with aiohttp workers, each with its own app.

The master (this process) owns the embedded Redis; every worker builds its app after the
fork, so no Redis connection or event loop crosses a fork. SIGTERM to the master is a
graceful stop: workers stop accepting, streaming PATCHes commit what they have.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from gunicorn.app.base import BaseApplication

from .app import create_app, make_runner
from .config import Config

GRACEFUL_TIMEOUT = 30  # seconds gunicorn gives a worker to stop


def worker_class() -> str:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "aiohttp.GunicornWebWorker"
    return "aiohttp.GunicornUVLoopWebWorker"


class StagingServer(BaseApplication):  # type: ignore[misc]
    def __init__(self, config: Config, redis_url: str):
        self.config = config
        self.redis_url = redis_url
        super().__init__()

    def load_config(self) -> None:
        settings: dict[str, Any] = {
            "bind": f"{self.config.host}:{self.config.port}",
            "workers": self.config.workers,
            "worker_class": worker_class(),
            "keepalive": int(self.config.keepalive_timeout),
            "graceful_timeout": GRACEFUL_TIMEOUT,
            "timeout": 60,  # heartbeat: a worker whose loop is stuck this long is replaced
            "proc_name": "tus-staging",
        }
        for key, value in settings.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        # aiohttp's worker serves the runner this returns (the per-client connection cap
        # lives in it), with the keep-alive and access log settings made there.
        app = create_app(self.config, self.redis_url)

        async def runner() -> web.AppRunner:
            return make_runner(app, self.config, GRACEFUL_TIMEOUT * 0.95)

        return runner


def run_workers(config: Config, redis_url: str) -> None:
    StagingServer(config, redis_url).run()
