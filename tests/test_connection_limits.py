"""Connections nobody can hold forever: a body announced and never sent is answered 408
after the network timeout; one client address holds at most --max-client-connections
connections per process, past which a new one is answered 429 and closed."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import signal
import socket
import time
from collections.abc import Iterator

import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from tus_staging.app import make_runner
from tus_staging.body_deadline import StallClock
from tus_staging.config import Config
from tus_staging.connection_cap import (
    DEFAULT_PER_CLIENT,
    CappedRunner,
    ConnectionCounts,
    client_key,
)

from .servers import TOKENS, ServerProcess, read_response, wait_until

# --- when a body has stalled (the clock is the test's) ---------------------------------------


def test_a_silent_body_stalls_exactly_when_the_timeout_has_passed() -> None:
    clock = StallClock(timeout=10.0, last_change=0.0)
    assert not clock.stalled(9.99, 0, reading=True)
    assert clock.stalled(10.0, 0, reading=True)


@given(st.lists(st.floats(0.0, 9.99), min_size=1, max_size=50))
def test_a_body_whose_bytes_keep_coming_never_stalls(gaps: list[float]) -> None:
    clock = StallClock(timeout=10.0, last_change=0.0)
    now = 0.0
    for received, gap in enumerate(gaps, 1):
        now += gap
        assert not clock.stalled(now, received, reading=True)


@given(st.integers(0, 10**6).map(float), st.integers(0, 9).map(float))
def test_time_the_server_could_not_read_is_not_the_clients(paused: float, after: float) -> None:
    clock = StallClock(timeout=10.0, last_change=0.0)
    assert not clock.stalled(paused, 0, reading=False)  # a handler slow to consume
    assert not clock.stalled(paused + after, 0, reading=True)
    assert clock.stalled(paused + 10.0, 0, reading=True)


# --- who a connection counts against -------------------------------------------------------


@given(st.ip_addresses(v=6), st.integers(0, 2**64 - 1))
def test_ipv6_clients_count_by_their_64(address: ipaddress.IPv6Address, host_bits: int) -> None:
    neighbour = ipaddress.IPv6Address((int(address) >> 64 << 64) | host_bits)
    if address.ipv4_mapped is None and neighbour.ipv4_mapped is None:
        assert client_key((str(address), 1, 0, 0)) == client_key((str(neighbour), 2, 0, 0))


@given(st.ip_addresses(v=4))
def test_ipv4_clients_count_by_address_also_when_mapped(address: ipaddress.IPv4Address) -> None:
    assert client_key((str(address), 1)) == str(address)
    assert client_key((f"::ffff:{address}", 1, 0, 0)) == str(address)


def test_unix_socket_connections_are_not_counted() -> None:
    assert client_key("") is None
    assert client_key(None) is None


@given(st.integers(1, 5), st.lists(st.booleans(), max_size=60))
def test_counts_never_pass_the_limit(limit: int, steps: list[bool]) -> None:
    counts = ConnectionCounts(limit)
    open_now = 0
    for connect in steps:
        if connect:
            admitted = counts.admit("client")
            assert admitted == (open_now < limit)
            open_now += admitted
        elif open_now:
            counts.release("client")
            open_now -= 1
        assert counts.open.get("client", 0) == open_now


def test_the_cap_defaults_to_64_and_is_off_behind_a_proxy() -> None:
    app = web.Application()
    capped = make_runner(app, Config(), 1.0)
    assert isinstance(capped, CappedRunner) and capped._counts.limit == DEFAULT_PER_CLIENT
    assert not isinstance(make_runner(app, Config(behind_proxy=True), 1.0), CappedRunner)
    assert not isinstance(make_runner(app, Config(max_client_connections=0), 1.0), CappedRunner)
    explicit = make_runner(app, Config(behind_proxy=True, max_client_connections=5), 1.0)
    assert isinstance(explicit, CappedRunner) and explicit._counts.limit == 5


# --- the real server ---------------------------------------------------------------------------


def request_head(server: ServerProcess, method: str, path: str, *headers: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{server.port}",
             f"Authorization: {TOKENS['alice']}", *headers]  # fmt: skip
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_to_close(sock: socket.socket) -> bytes:
    rest = b""
    while chunk := sock.recv(65536):
        rest += chunk
    return rest


def test_a_body_announced_and_never_sent_is_answered_408_then_closed(make_server) -> None:
    server = make_server("--network-timeout", "1")
    (server.data_dir / "staging" / "alice").mkdir(parents=True)
    (server.data_dir / "staging" / "alice" / "x").write_text("x")
    with socket.create_connection(("127.0.0.1", server.port), timeout=15) as sock:
        head = request_head(server, "PATCH", "/mv/x", "Content-Type: application/json",
                            "Content-Length: 1000")  # fmt: skip
        sock.sendall(head)
        status, _ = read_response(sock)
        assert status == 408
        read_to_close(sock)  # closed: the rest of the body is not waited for
    assert (server.data_dir / "staging" / "alice" / "x").exists()


def test_a_slow_body_that_keeps_coming_is_served(make_server) -> None:
    server = make_server("--network-timeout", "1.5")
    (server.data_dir / "staging" / "alice").mkdir(parents=True)
    (server.data_dir / "staging" / "alice" / "slow").write_text("x")
    body = json.dumps({"newPath": "arrived"}).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=15) as sock:
        sock.sendall(request_head(server, "PATCH", "/mv/slow", "Content-Type: application/json",
                                  f"Content-Length: {len(body)}"))  # fmt: skip
        for index in range(0, len(body), 4):  # 2 s in all, never 1.5 s without a byte
            sock.sendall(body[index : index + 4])
            time.sleep(2 / (len(body) / 4))
        status, _ = read_response(sock)
    assert status == 200
    assert (server.data_dir / "staging" / "alice" / "arrived").exists()


@contextlib.contextmanager
def held_connections() -> Iterator[list[socket.socket]]:
    held: list[socket.socket] = []
    try:
        yield held
    finally:
        for sock in held:
            sock.close()


def try_connection(server: ServerProcess, held: list[socket.socket]) -> int:
    """Open a connection and ask for /healthz on it: 200 (kept open in ``held``) or 429."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    try:
        sock.sendall(request_head(server, "GET", "/healthz"))
        status, _ = read_response(sock)
    except ConnectionError:  # the refusal was read, then the close reset the connection
        sock.close()
        return 429
    if status == 200:
        held.append(sock)
    else:
        sock.close()
    return status


def test_past_the_cap_a_new_connection_is_refused_until_one_closes(make_server) -> None:
    server = make_server("--max-client-connections", "3")
    with held_connections() as held:
        # The start-up probe's connection may still be closing: wait for the server to see it.
        wait_until(lambda: try_connection(server, held) == 200 and len(held) == 3, 10, "3 admitted")
        for _ in range(3):
            assert try_connection(server, held) == 429
        held.pop().close()
        wait_until(lambda: try_connection(server, held) == 200, 10, "a freed connection")
        assert try_connection(server, held) == 429
    assert "refusing new connections from 127.0.0.1" in server.log()


@pytest.mark.parametrize("workers", [2])
def test_with_workers_each_process_keeps_its_own_cap(make_server, workers: int) -> None:
    cap = 2
    server = make_server("--max-client-connections", str(cap), "--workers", str(workers))
    with held_connections() as held:
        statuses = [try_connection(server, held) for _ in range(cap * workers + 4)]
        assert set(statuses) <= {200, 429}
        assert cap <= len(held) <= cap * workers, statuses
        assert statuses.count(429) >= 4
    server.stop(signal.SIGINT)  # gunicorn's quick stop: a graceful one waits its full timeout
