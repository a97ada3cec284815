from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from .js_env import JS_DIR, npm_install
from .servers import TOKENS, InProcessServer, RedisProcess, ServerProcess, write_tokens_file
from .tus_client import TusTestClient


@pytest.fixture
def redis_proc(tmp_path: Path) -> Iterator[RedisProcess]:
    proc = RedisProcess(tmp_path / "redis")
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture
async def redis(redis_proc: RedisProcess) -> AsyncIterator[aioredis.Redis]:
    """An asyncio client of this test's own Redis."""
    client = aioredis.Redis(unix_socket_path=str(redis_proc.socket))
    yield client
    await client.aclose()


@pytest.fixture
def tokens_file(tmp_path: Path) -> Path:
    return write_tokens_file(tmp_path / "tokens.txt")


@pytest.fixture
def make_server(
    request: pytest.FixtureRequest, tmp_path: Path, redis_proc: RedisProcess, tokens_file: Path
):
    """Start servers sharing this test's Redis and data dir (extra CLI args and environment
    allowed; with ``single_user=True`` without credentials: the user is ``local``). In a
    module marked ``in_process`` they run in this process (see InProcessServer), unless
    they need an environment of their own."""
    in_process = request.node.get_closest_marker("in_process") is not None
    started: list[ServerProcess | InProcessServer] = []

    def start(
        *extra_args: str,
        data_dir: Path | None = None,
        env: dict[str, str] | None = None,
        single_user: bool = False,
    ) -> ServerProcess | InProcessServer:
        data = data_dir or tmp_path / "data"
        tokens = None if single_user else tokens_file
        server: ServerProcess | InProcessServer
        if in_process and env is None:
            server = InProcessServer(data, redis_proc.url, tokens, list(extra_args))
        else:
            server = ServerProcess(data, redis_proc.url, tokens, list(extra_args), env)
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def server(make_server) -> ServerProcess:
    return make_server()


@pytest.fixture
def alice(server: ServerProcess) -> TusTestClient:
    return TusTestClient(server.files_url, TOKENS["alice"])


@pytest.fixture
def bob(server: ServerProcess) -> TusTestClient:
    return TusTestClient(server.files_url, TOKENS["bob"])


def md5_of(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        while block := handle.read(4 * 1024 * 1024):
            digest.update(block)
    return digest.hexdigest()


@pytest.fixture
def kbase_server(tmp_path: Path, redis_proc: RedisProcess, auth_service) -> Iterator[ServerProcess]:
    """A server in KBase auth mode against the module's own ``auth_service`` fixture."""
    server = ServerProcess(
        tmp_path / "data", redis_proc.url, None, ["--auth-url", auth_service.url]
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def node_modules() -> Path:
    """tests/js's npm packages (tus-js-client, Uppy, esbuild, playwright-core), installed
    from the lock file once."""
    return npm_install(JS_DIR)
