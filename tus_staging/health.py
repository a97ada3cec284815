"""``GET /healthz``: Redis answers and the data directories are writable."""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

import redis.exceptions
from aiohttp import web

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
        checks["redis"] = bool(await asyncio.wait_for(services.redis.ping(), timeout=3))
    except (redis.exceptions.RedisError, TimeoutError, OSError):
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
