"""``--workers N``: gunicorn's master with aiohttp workers, each with its own app.

The master (this process) owns the embedded Redis; every worker builds its app after the
fork, so no Redis connection or event loop crosses a fork. SIGTERM to the master is a
graceful stop: workers stop accepting, streaming PATCHes commit what they have.
"""

from __future__ import annotations

from typing import Any

from gunicorn.app.base import BaseApplication

from .app import create_app
from .config import Config


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
            "graceful_timeout": 30,
            "timeout": 60,  # heartbeat: a worker whose loop is stuck this long is replaced
            "accesslog": None,  # tus_staging.access logs each request (request_log.py)
            "proc_name": "tus-staging",
        }
        for key, value in settings.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        return create_app(self.config, self.redis_url)


def run_workers(config: Config, redis_url: str) -> None:
    StagingServer(config, redis_url).run()
