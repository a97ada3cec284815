"""The Globus link file (``.globus_id``) in KBase auth mode, against the real server and a
real auth service that lists linked identities."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tus_staging.globus_link import RECHECK, RETRY, GlobusLinks
from tus_staging.kbase_auth import KBaseAuth

from .fake_auth import FakeAuthService
from .servers import ServerProcess

USERS = {"kb-linked": "linked", "kb-plain": "plain", "kb-crowd": "crowd"}
IDENTS = {
    "linked": [
        {"provider": "Google", "provusername": "linked@gmail.com", "id": "g1"},
        {"provider": "Globus", "provusername": "linked@globusid.org", "id": "u1"},
        {"provider": "Globus", "provusername": "second@globusid.org", "id": "u2"},
    ],
    "plain": [{"provider": "Google", "provusername": "plain@gmail.com", "id": "g2"}],
    "crowd": [{"provider": "Globus", "provusername": "crowd@globusid.org", "id": "u3"}],
}


@pytest.fixture
def auth_service() -> Iterator[FakeAuthService]:
    with FakeAuthService(dict(USERS), idents=IDENTS) as service:
        yield service


def call(server: ServerProcess, token: str, route: str = "/test-auth", method: str = "GET", **kw):
    return requests.request(
        method, f"{server.url}{route}", headers={"Authorization": token}, timeout=30, **kw
    )


def link_file(server: ServerProcess, user: str) -> Path:
    return server.data_dir / "staging" / user / ".globus_id"


def test_the_first_globus_identity_is_written_once(
    kbase_server: ServerProcess, auth_service: FakeAuthService
) -> None:
    for _ in range(5):
        assert call(kbase_server, "kb-linked").status_code == 200
    assert link_file(kbase_server, "linked").read_text() == "linked@globusid.org"
    assert auth_service.me_calls == 1  # not asked on every request
    # Without a linked Globus identity: no file, and the auth service asked once too.
    for _ in range(5):
        assert call(kbase_server, "kb-plain").status_code == 200
    assert not link_file(kbase_server, "plain").exists()
    assert auth_service.me_calls == 2
    # Hidden, as every dot file: listed only with showHidden.
    names = [e["name"] for e in call(kbase_server, "kb-linked", "/list/").json()]
    assert ".globus_id" not in names
    shown = call(kbase_server, "kb-linked", "/list/", params={"showHidden": "true"}).json()
    assert [e["name"] for e in shown] == [".globus_id"]


def test_an_empty_file_is_filled_and_a_written_one_kept(
    kbase_server: ServerProcess, auth_service: FakeAuthService
) -> None:
    empty = link_file(kbase_server, "linked")
    empty.parent.mkdir(parents=True)
    empty.write_text("")
    kept = link_file(kbase_server, "crowd")
    kept.parent.mkdir(parents=True)
    kept.write_text("chosen-by-the-operator@globusid.org")
    assert call(kbase_server, "kb-linked").status_code == 200
    assert call(kbase_server, "kb-crowd").status_code == 200
    assert empty.read_text() == "linked@globusid.org"
    assert kept.read_text() == "chosen-by-the-operator@globusid.org"
    assert auth_service.me_calls == 1  # only for the empty one


def test_the_link_file_cannot_be_deleted_or_moved(kbase_server: ServerProcess) -> None:
    assert call(kbase_server, "kb-linked").status_code == 200
    deleted = call(kbase_server, "kb-linked", "/delete/.globus_id", "DELETE")
    assert (deleted.status_code, deleted.text.strip()) == (403, "cannot delete protected file")
    moved = call(kbase_server, "kb-linked", "/mv/.globus_id", "PATCH", data={"newPath": "x"})
    assert (moved.status_code, moved.text.strip()) == (403, "cannot rename or move protected file")
    (link_file(kbase_server, "linked").parent / "mine.txt").write_text("mine")
    onto = call(kbase_server, "kb-linked", "/mv/mine.txt", "PATCH", data={"newPath": ".globus_id"})
    assert onto.status_code == 403
    assert link_file(kbase_server, "linked").read_text() == "linked@globusid.org"


def test_concurrent_first_requests_write_it_whole(
    kbase_server: ServerProcess, auth_service: FakeAuthService
) -> None:
    barrier = threading.Barrier(16)

    def first(_: int) -> int:
        barrier.wait()
        return call(kbase_server, "kb-crowd", "/list/").status_code

    with ThreadPoolExecutor(16) as pool:
        assert set(pool.map(first, range(16))) == {200}
    assert link_file(kbase_server, "crowd").read_text() == "crowd@globusid.org"
    assert auth_service.me_calls == 1
    home = link_file(kbase_server, "crowd").parent
    assert sorted(p.name for p in home.iterdir()) == [".globus_id"]  # no temp file left


def test_an_auth_service_that_cannot_say_fails_no_request(
    kbase_server: ServerProcess, auth_service: FakeAuthService
) -> None:
    auth_service.me_failing = True
    for _ in range(3):
        assert call(kbase_server, "kb-linked").status_code == 200
    assert not link_file(kbase_server, "linked").exists()
    assert auth_service.me_calls == 1  # tried again later, not on every request
    assert "globus link of linked not checked" in kbase_server.log()


async def test_users_are_looked_at_again_after_a_while(tmp_path: Path) -> None:
    now = [0.0]
    links = GlobusLinks(clock=lambda: now[0])
    home = tmp_path / "plain"
    home.mkdir()
    idents = {user: list(found) for user, found in IDENTS.items()}
    with FakeAuthService(dict(USERS), idents=idents) as service:
        auth = KBaseAuth(service.url)
        try:
            service.me_failing = True
            await links.ensure(auth, "plain", "kb-plain", home)
            now[0] += RETRY - 1
            await links.ensure(auth, "plain", "kb-plain", home)
            assert service.me_calls == 1
            service.me_failing = False
            now[0] += 2  # an auth service that could not say is asked again soon
            await links.ensure(auth, "plain", "kb-plain", home)
            assert service.me_calls == 2 and not (home / ".globus_id").exists()
            # The user links a Globus identity: seen at the next look.
            idents["plain"].append({"provider": "Globus", "provusername": "p@globusid.org"})
            now[0] += RECHECK - 1
            await links.ensure(auth, "plain", "kb-plain", home)
            assert not (home / ".globus_id").exists()
            now[0] += 2
            await links.ensure(auth, "plain", "kb-plain", home)
            assert (home / ".globus_id").read_text() == "p@globusid.org"
            assert service.me_calls == 3
        finally:
            await auth.close()
