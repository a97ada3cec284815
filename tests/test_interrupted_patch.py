"""A PATCH whose client vanishes (or falls silent) mid-body: every byte that reached the
server is committed, HEAD reports exactly that offset, and the upload resumes from it.

The body is sent over a raw socket so that the test controls exactly how many bytes
leave, and how the connection ends (FIN, or RST with SO_LINGER 0).
"""

from __future__ import annotations

import os
import socket
import struct
import time

import pytest

from .checks import finish_and_check
from .servers import TOKENS, ServerProcess, open_raw_patch, wait_delivered
from .tus_client import TusTestClient

MiB = 1024 * 1024
TOTAL = 8 * MiB
# Not a multiple of the server's 1 MiB block, nor of any power of two.
SENT = 3 * MiB + 512 * 1024 + 777


def wait_for_offset(client: TusTestClient, url: str, expected: int, timeout: float) -> list[int]:
    """HEAD until the offset is ``expected`` (or the deadline); the offsets seen, in order."""
    seen: list[int] = []
    deadline = time.monotonic() + timeout
    while True:
        seen.append(client.offset(url))
        if seen[-1] == expected or time.monotonic() > deadline:
            return seen
        time.sleep(0.1)


@pytest.mark.parametrize("ending", ["close", "reset"])
def test_vanished_client_keeps_every_sent_byte(
    server: ServerProcess, alice: TusTestClient, ending: str
) -> None:
    data = os.urandom(TOTAL)
    name = f"interrupted-{ending}.bin"
    url = alice.create_url(len(data), name)

    sock = open_raw_patch(url, TOKENS["alice"], 0, len(data))
    sock.sendall(data[:SENT])
    wait_delivered(sock)  # all sent bytes are in the server process before the close,
    time.sleep(0.2)  # and out of aiohttp's buffer (the test below covers an immediate close)
    if ending == "reset":
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()

    seen = wait_for_offset(alice, url, SENT, timeout=10)
    assert seen[-1] == SENT, f"HEAD offsets seen after the disconnect: {seen}"
    assert seen == sorted(seen), f"the committed offset went backwards: {seen}"
    partial = server.data_dir / "uploads"
    assert any(partial.iterdir()), "the partial file is gone before the upload finished"

    finish_and_check(server, alice, url, data, name)
    assert not list(partial.iterdir())


def test_disconnect_right_after_sending_loses_nothing(
    server: ServerProcess, alice: TusTestClient
) -> None:
    """A flaky link: the client closes the connection the moment its last byte is out,
    ten times in one upload, resuming from HEAD each time. TCP delivers every byte
    before the FIN, so the server has them all: each one must be kept."""
    piece = 3_500_001
    data = os.urandom(10 * piece + 12_345)
    name = "flaky.bin"
    url = alice.create_url(len(data), name)
    offset = 0
    lost: list[int] = []
    while len(data) - offset > piece:
        sock = open_raw_patch(url, TOKENS["alice"], offset, len(data) - offset)
        sock.sendall(data[offset : offset + piece])
        sock.close()
        committed = wait_for_offset(alice, url, offset + piece, timeout=0.5)[-1]
        assert offset <= committed <= offset + piece
        lost.append(offset + piece - committed)
        offset = committed

    # Whatever was lost, resuming from HEAD gives the exact file.
    finish_and_check(server, alice, url, data, name)
    assert lost == [0] * len(lost), f"bytes lost at each disconnect: {lost}"


def test_silent_client_releases_lock_to_head(server: ServerProcess, alice: TusTestClient) -> None:
    """A client that stops sending but keeps its socket open: a HEAD from another
    connection asks for the lock, and the stalled PATCH commits and lets go within
    seconds — not after the 60 s network timeout."""
    data = os.urandom(TOTAL)
    name = "stalled.bin"
    url = alice.create_url(len(data), name)

    sock = open_raw_patch(url, TOKENS["alice"], 0, len(data))
    try:
        sock.sendall(data[:SENT])
        wait_delivered(sock)

        started = time.monotonic()
        head = alice.head(url)
        elapsed = time.monotonic() - started
        assert head.status_code == 200, head.text
        assert elapsed < 5, f"HEAD took {elapsed:.1f} s behind a stalled PATCH"
        assert int(head.headers["Upload-Offset"]) == SENT

        # The stalled request was answered: it lost the upload to the newcomer.
        sock.settimeout(10)
        status_line = sock.recv(4096).split(b"\r\n", 1)[0]
        assert status_line.startswith(b"HTTP/1.1 423"), status_line
    finally:
        sock.close()

    finish_and_check(server, alice, url, data, name)


def test_stalled_client_committed_after_network_timeout(make_server) -> None:
    """Without anyone asking for the lock, a silent client's bytes are committed once the
    network timeout runs out, and the lock is free for the resume at once."""
    server = make_server("--network-timeout", "2")
    alice = TusTestClient(server.files_url, TOKENS["alice"])
    data = os.urandom(2 * MiB + 99)
    name = "timed-out.bin"
    url = alice.create_url(len(data), name)
    sent = MiB + 4321

    sock = open_raw_patch(url, TOKENS["alice"], 0, len(data))
    try:
        sock.sendall(data[:sent])
        wait_delivered(sock)
        sock.settimeout(15)
        started = time.monotonic()
        answer = sock.recv(4096)  # the server gives up on the silent body by itself
        elapsed = time.monotonic() - started
        assert answer, "the server closed without answering the timed-out PATCH"
        assert 1 <= elapsed < 10, f"answered after {elapsed:.1f} s with a 2 s network timeout"
    finally:
        sock.close()

    started = time.monotonic()
    assert alice.offset(url) == sent
    assert time.monotonic() - started < 1, "the timed-out PATCH did not release its lock"
    finish_and_check(server, alice, url, data, name)
