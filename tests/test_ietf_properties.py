"""Properties of the IETF draft's uploads, with hypothesis against the real server: any
split of a file into a creation and appends, some of them cut off mid-content, stages
exactly the file; and no value of the draft's fields makes the server fail or changes an
upload it refuses to change."""

from __future__ import annotations

import hashlib
import itertools
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .checks import sidecar, staged
from .ietf_client import IetfClient, path_from_log
from .servers import TOKENS, InProcessServer, wait_delivered

pytestmark = pytest.mark.in_process

NAMES = itertools.count()  # every example shares the server: each uploads its own file
STEPS = st.lists(
    st.tuples(
        st.floats(0, 1),  # the share of what is left that the request carries
        st.none() | st.floats(0, 1, exclude_max=True),  # cut off after this share of it
    ),
    max_size=5,
)
SERVER_SETTINGS = settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def send(
    server: InProcessServer,
    client: IetfClient,
    path: str | None,
    offset: int,
    content: bytes,
    cut: float | None,
    complete: bool,
    **extra: str,
) -> tuple[str, dict | None]:
    """A creation (``path`` None) or an append of ``content`` at ``offset``; with ``cut``,
    the client vanishes after that share of it. The upload's path, and the completion's
    JSON when the request completed the upload."""
    if cut is None:
        if path is None:
            name = f"split-{next(NAMES)}.bin"
            exchange = client.create(content, complete=complete, name=name, **extra)
            path = exchange.location
        else:
            exchange = client.append(path, offset, content, complete=complete)
        final = exchange.final
        assert final.status in (200, 201, 204), final
        assert final.headers["upload-offset"] == str(offset + len(content))
        return path, final.json() if complete else None
    request_id = f"cut-{next(NAMES)}"
    extra["X_Request_ID"] = request_id
    if path is None:
        name = f"split-{next(NAMES)}.bin"
        connection = client.start_creation(len(content), name, complete=complete, **extra)
    else:
        connection = client.start_append(path, offset, len(content), complete=complete, **extra)
    with connection:
        connection.send(content[: int(len(content) * cut)])
        wait_delivered(connection.sock)
    return path or path_from_log(server, request_id), None


@SERVER_SETTINGS
@given(
    size=st.integers(0, 300_000),
    seed=st.integers(0, 2**32),
    version=st.sampled_from([6, 7, 8, None]),
    announce_length=st.booleans(),
    steps=STEPS,
)
def test_any_split_with_cuts_stages_the_file(
    server: InProcessServer,
    size: int,
    seed: int,
    version: int | None,
    announce_length: bool,
    steps: list[tuple[float, float | None]],
) -> None:
    data = random.Random(seed).randbytes(size)
    client = IetfClient(server, TOKENS["alice"], version)
    path: str | None = None
    offset = 0
    for share, cut in steps:
        content = data[offset : offset + round((size - offset) * share)]
        extra = {"Upload_Length": str(size)} if path is None and announce_length else {}
        path, _ = send(server, client, path, offset, content, cut, False, **extra)
        committed = int(client.head(path).headers["upload-offset"])
        assert offset <= committed <= offset + len(content), (offset, committed, len(content))
        offset = committed
    if path is None:
        path, record = send(server, client, None, 0, data, None, complete=True)
    else:
        path, record = send(server, client, path, offset, data[offset:], None, complete=True)
    assert record is not None
    md5 = hashlib.md5(data).hexdigest()
    assert (record["md5"], record["size"]) == (md5, size)
    name = record["name"]
    assert staged(server, "alice", name).read_bytes() == data
    assert sidecar(server, "alice", name)["md5"] == md5


FIELD_TEXT = st.one_of(
    st.sampled_from(["?1", "?0", "0", "1", "-1", "8", "6", "?1;a=1", "1.5", '"x"', ":AA==:"]),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f")),
)
FIELDS = st.dictionaries(
    st.sampled_from(
        [
            "Upload-Complete",
            "Upload-Offset",
            "Upload-Length",
            "Upload-Draft-Interop-Version",
            "Content-Disposition",
            "Upload-Metadata",
            "Content-Type",
            "Upload-Defer-Length",
        ]
    ),
    FIELD_TEXT.map(str.strip),
    max_size=6,
)


@SERVER_SETTINGS
@given(
    method=st.sampled_from(["POST", "PATCH", "HEAD", "DELETE", "GET", "OPTIONS"]),
    fields=FIELDS,
    body=st.binary(max_size=64),
)
def test_no_field_value_fails_the_server(
    server: InProcessServer, method: str, fields: dict[str, str], body: bytes
) -> None:
    client = IetfClient(server, TOKENS["alice"], 8)
    path = client.create(b"kept", complete=False, name=f"hostile-{next(NAMES)}.bin").location
    target = "/files/" if method == "POST" else path
    headers = [("Authorization", f"Bearer {TOKENS['alice']}"), *fields.items()]
    headers.append(("Content-Length", str(len(body))))
    with client.connect() as connection:
        final = connection.request(method, target, headers, body)[-1]
    assert final.status < 500, (final, fields)
    after = client.head(path)
    if final.status >= 400 and method != "DELETE":
        # A refusal changed nothing.
        assert (after.status, after.headers["upload-offset"]) == (204, "4"), (final, fields)
