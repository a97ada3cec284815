"""A server that dies while it stages an upload the IETF draft completed: restarted, the
upload is complete for the draft's offset retrieval, the completion's answer is the
sidecar (mtime included), and GET serves the bytes."""

from __future__ import annotations

import hashlib
import os

import pytest
import requests

from .checks import sidecar, staged
from .ietf_client import IetfClient
from .servers import TOKENS, RedisProcess, fast_forward_lock_expiry

CRASH_EXIT_STATUS = 137


@pytest.mark.parametrize(
    "crash_at", ["finalize-before-move", "finalize-after-move", "finalize-before-complete"]
)
def test_a_completion_cut_by_a_crash_is_finished_after_restart(
    make_server, redis_proc: RedisProcess, crash_at: str
) -> None:
    server = make_server(env={"TUS_STAGING_CRASH_AT": crash_at})
    client = IetfClient(server, TOKENS["alice"], 8)
    data = os.urandom(300_000)
    with client.start_creation(len(data), "crashed.bin", complete=True) as connection:
        path = connection.read_response().headers["location"]  # the 104
        connection.send(data)
        with pytest.raises(ConnectionError):
            connection.responses()
    assert server.process is not None
    assert server.process.wait(30) == CRASH_EXIT_STATUS, server.log()
    server.process = None
    with redis_proc.client() as redis:
        fast_forward_lock_expiry(redis)
    server.env = {}
    server.start()

    head = client.head(path)
    assert (head.status, head.headers["upload-complete"]) == (204, "?1"), head
    again = client.append(path, len(data), complete=True).final
    assert again.status == 200
    assert again.json() == sidecar(server, "alice", "crashed.bin")
    assert again.json()["md5"] == hashlib.md5(data).hexdigest()
    assert staged(server, "alice", "crashed.bin").read_bytes() == data
    served = requests.get(
        server.url + path, headers={"Authorization": f"Bearer {TOKENS['alice']}"}, timeout=30
    )
    assert served.content == data
