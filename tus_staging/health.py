"""Operational endpoints: ``GET /healthz`` (Redis answers, data dirs writable) and
``GET /metrics`` (Prometheus)."""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

import redis.exceptions
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest

from store.topology import UNAVAILABLE

from .metrics import exposition
from .services import services_of


def _writable(directory: Path) -> bool:
    try:
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".healthz-"):
            return True
    except OSError:
        return False


async def healthz(request: web.Request) -> web.Response:
    services = services_of(request)
    checks: dict[str, bool] = {}
    try:
        checks["redis"] = await asyncio.wait_for(services.uploads.ping(), timeout=3)
    except (*UNAVAILABLE, redis.exceptions.RedisError, TimeoutError, OSError):
        checks["redis"] = False
    layout = services.layout
    for name, directory in (
        ("staging_dir", layout.staging_dir),
        ("metadata_dir", layout.metadata_dir),
        ("upload_dir", layout.upload_dir),
    ):
        checks[name] = await asyncio.to_thread(_writable, directory)
    healthy = all(checks.values())
    return web.json_response(
        {"status": "ok" if healthy else "unhealthy", "checks": checks, "pid": os.getpid()},
        status=200 if healthy else 503,
        headers={"Cache-Control": "no-store"},
    )


async def metrics(request: web.Request) -> web.Response:
    services = services_of(request)
    # Open uploads come from the shared state, so every worker reports the same number.
    scrape = CollectorRegistry()
    open_uploads = Gauge(
        "tus_staging_open_uploads", "uploads created and not yet complete", registry=scrape
    )
    open_uploads.set(await services.uploads.open_count())
    body = exposition() + generate_latest(scrape)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
