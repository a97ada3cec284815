"""--auth-url against a real small HTTP server that behaves like KBase auth2."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import requests

from protocol.errors import Unauthorized
from tus_staging.kbase_auth import KBaseAuth

from .fake_auth import FakeAuthService
from .servers import ServerProcess

USERS = {"kb-token-1": "kbuser", "kb-token-2": "other"}


@pytest.fixture
def auth_service() -> Iterator[FakeAuthService]:
    with FakeAuthService(dict(USERS), cachefor_ms=1500) as service:
        yield service


def whoami(server: ServerProcess, **kwargs) -> requests.Response:
    return requests.get(f"{server.url}/test-auth", **kwargs)


def test_token_in_header_or_cookie(kbase_server: ServerProcess) -> None:
    assert whoami(kbase_server, headers={"Authorization": "kb-token-1"}).text.endswith("kbuser")
    bearer = whoami(kbase_server, headers={"Authorization": "Bearer kb-token-2"})
    assert bearer.text.endswith("other")
    cookie = whoami(kbase_server, cookies={"kbase_session": "kb-token-1"})
    assert cookie.text.endswith("kbuser")
    backup = whoami(kbase_server, cookies={"kbase_session_backup": "kb-token-2"})
    assert backup.text.endswith("other")


def test_bad_or_missing_token_is_401(kbase_server: ServerProcess) -> None:
    assert whoami(kbase_server, headers={"Authorization": "forged"}).status_code == 401
    assert whoami(kbase_server).status_code == 401


class Clock:
    """Time that the test moves by hand, both the monotonic and the wall clock."""

    def __init__(self) -> None:
        self.now = time.time()

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now


async def test_answers_are_cached_for_cachefor(auth_service: FakeAuthService) -> None:
    clock = Clock()
    auth = KBaseAuth(auth_service.url, clock=clock)
    try:
        for _ in range(5):
            assert await auth.user_for_token("kb-token-1") == "kbuser"
        assert auth_service.calls == 1
        clock.now += 1.499  # cachefor is 1500 ms
        assert await auth.user_for_token("kb-token-1") == "kbuser"
        assert auth_service.calls == 1
        clock.now += 0.002
        assert await auth.user_for_token("kb-token-1") == "kbuser"
        assert auth_service.calls == 2
    finally:
        await auth.close()


async def test_cache_never_outlives_expires(auth_service: FakeAuthService) -> None:
    clock = Clock()
    auth = KBaseAuth(auth_service.url, clock=clock)
    auth_service.cachefor_ms = 3_600_000
    auth_service.expires_ms["kb-token-2"] = int(clock.now * 1000) + 1000
    try:
        assert await auth.user_for_token("kb-token-2") == "other"
        clock.now += 1.001
        with pytest.raises(Unauthorized):
            await auth.user_for_token("kb-token-2")
    finally:
        await auth.close()


def test_auth_service_down_is_503(
    kbase_server: ServerProcess, auth_service: FakeAuthService
) -> None:
    auth_service.failing = True
    response = whoami(kbase_server, headers={"Authorization": "kb-token-1"})
    assert response.status_code == 503
    assert "Retry-After" in response.headers
    auth_service.failing = False
    assert whoami(kbase_server, headers={"Authorization": "kb-token-1"}).status_code == 200
    auth_service.__exit__()
    unreachable = whoami(kbase_server, headers={"Authorization": "kb-token-2"})
    assert unreachable.status_code == 503


def test_kbase_user_uploads_into_own_area(kbase_server: ServerProcess) -> None:
    from .tus_client import TusTestClient

    client = TusTestClient(kbase_server.files_url, "kb-token-1")
    client.upload(b"kbase data\n", "kb.txt")
    assert (kbase_server.data_dir / "staging" / "kbuser" / "kb.txt").read_bytes() == b"kbase data\n"
