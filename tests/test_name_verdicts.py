"""One path policy: any name gets the same verdict from every route that creates an entry
— a tus upload's creation, /mkdir, /mv — against the real server. (KBase's /upload
refuses a few more names on top, in that service's words: tests/test_staging_upload.py.)"""

from __future__ import annotations

import itertools
from urllib.parse import quote

import pytest
import requests
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from .servers import TOKENS
from .tus_client import TusTestClient

pytestmark = pytest.mark.in_process

HEADERS = {"Authorization": TOKENS["alice"]}
FOLDERS = itertools.count()

# Names of every kind the policy has an opinion on, and anything else.
NAMES = st.one_of(
    st.sampled_from(
        [
            "ok.txt",
            ".hidden",
            "..",
            ".",
            " lead",
            "trail ",
            "a\\b",
            "c:x",
            "%2e%2e",
            "é",
            "e\u0301",
            "evil\u202etxt",
            "zero\u200bwidth",
            "👩\u200d👩\u200d👧",
            "\u200dedge",
            "\uff0e\uff0e",
            "a\u2215b",
            "\u3164",
            "x" * 255,
            "x" * 256,
            "ok\ttab",
            "line\nbreak",
            "\x7f",
            ".globus_id",
            "a,b",
        ]
    ),
    st.text(min_size=1, max_size=40).filter(lambda name: "/" not in name),
)


def verdict(response: requests.Response) -> bool:
    """Accepted (2xx) or refused (4xx); anything else fails the test."""
    assert response.status_code < 500, (response.status_code, response.text)
    assert 200 <= response.status_code < 300 or 400 <= response.status_code < 500
    if response.status_code >= 400:
        assert response.text.count("\n") == 1, response.text  # one line, with its reason
    return response.status_code < 300


def tus(server) -> TusTestClient:
    return TusTestClient(server.files_url, TOKENS["alice"])


def by_tus(server, folder: str, name: str) -> bool:
    return verdict(tus(server).create(0, name, destPath=folder))


def by_mkdir(server, folder: str, name: str) -> bool:
    # Dots escaped too: an HTTP client would otherwise resolve ".." itself.
    url = f"{server.url}/mkdir/{folder}/{quote(name, safe='').replace('.', '%2E')}"
    return verdict(requests.post(url, headers=HEADERS, timeout=30))


def by_mv(server, folder: str, name: str) -> bool:
    assert verdict(requests.post(f"{server.url}/mkdir/{folder}", headers=HEADERS, timeout=30))
    created = tus(server).create(0, "src.bin", destPath=folder)
    assert created.status_code == 201
    return verdict(
        requests.patch(
            f"{server.url}/mv/{folder}/src.bin",
            headers=HEADERS,
            json={"newPath": f"{folder}/{name}"},
            timeout=30,
        )
    )


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(name=NAMES)
def test_every_route_gives_a_name_the_same_verdict(server, name: str) -> None:
    assume(name.encode("utf-8", "surrogatepass") == name.encode("utf-8", "replace"))
    assume(name != ".")  # in a path, "." is the folder itself: not a name
    index = next(FOLDERS)
    verdicts = {
        "tus creation": by_tus(server, f"t{index}", name),
        "mkdir": by_mkdir(server, f"k{index}", name),
        "mv": by_mv(server, f"v{index}", name),
    }
    assert len(set(verdicts.values())) == 1, (name, verdicts)
