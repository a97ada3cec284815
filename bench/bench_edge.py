"""What the per-client connection cap costs the upload hot path, beside this machine's limits.

Run: .venv/bin/python bench/bench_edge.py [--size-mib 512] [--rounds 3]
Prints figures; it is not a pass/fail test. In one run:

* the limits: ``md5sum`` of a random file (page-cached, 2nd run) and a plain disk write of
  it (``dd bs=4M conv=fdatasync``);
* the cost of one forwarded protocol call (``CountedConnection.data_received`` in front of
  a protocol that does nothing), against calling that protocol directly;
* the file uploaded as one PATCH to a server with the cap (the default, 64) and without it
  (``--max-client-connections 0``), alternating, ``--rounds`` times each: wall-clock MB/s
  and the server's CPU seconds per GB.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import sys
import tempfile
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_upload import Bench, interleaved_rounds, write_random
from bench.machine import cpu_lines, disk_limits
from tests.servers import RedisProcess, ServerProcess, write_tokens_file
from tus_staging.connection_cap import ConnectionCounts, CountedConnection

MiB = 1024 * 1024
CALLS = 1_000_000


class Nothing(asyncio.Protocol):
    def data_received(self, data: bytes) -> None:
        pass


class FakeTransport(asyncio.Transport):
    def get_extra_info(self, name: str, default: object = None) -> object:
        return ("192.0.2.1", 40000) if name == "peername" else default


def forwarding_cost_ns() -> tuple[float, float]:
    """ns per data_received: straight to the protocol, and through CountedConnection."""
    direct = Nothing()
    counted = CountedConnection(ConnectionCounts(64), Nothing)
    counted.connection_made(FakeTransport())
    chunk = b"x" * 65536
    plain = min(timeit.repeat(lambda: direct.data_received(chunk), number=CALLS, repeat=5))
    through = min(timeit.repeat(lambda: counted.data_received(chunk), number=CALLS, repeat=5))
    return plain / CALLS * 1e9, through / CALLS * 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=512, help="size of the uploaded file")
    parser.add_argument("--rounds", type=int, default=3, help="uploads per setting")
    args = parser.parse_args()
    size = args.size_mib * MiB
    for line in cpu_lines():
        print(line)
    plain_ns, counted_ns = forwarding_cost_ns()
    print(f"data_received, direct:                   {plain_ns:7.1f} ns per call")
    print(f"data_received, through CountedConnection: {counted_ns:7.1f} ns per call "
          f"(+{counted_ns - plain_ns:.1f} ns; one call per socket read, not per byte)")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench-edge-") as tmp_name:
        tmp = Path(tmp_name)
        tokens = write_tokens_file(tmp / "tokens.txt")
        path = tmp / "random.bin"
        write_random(path, size)
        limits = disk_limits(path)
        md5 = limits.md5
        print(limits.text())
        redis_proc = RedisProcess(tmp / "redis")
        redis_proc.start()
        settings = {"cap 64 (default)": [], "no cap (--max-client-connections 0)": ["0"]}
        servers = {}
        try:
            for label, value in settings.items():
                extra = ["--max-client-connections", *value] if value else []
                server = ServerProcess(tmp / f"data-{len(servers)}", redis_proc.url, tokens, extra)
                server.start()
                servers[label] = (server, Bench(server))
            workloads = {
                label: (bench, functools.partial(bench.requests_file_object, path, md5))
                for label, (_server, bench) in servers.items()
            }
            results = interleaved_rounds(workloads, size, args.rounds)
            print(f"{args.size_mib} MiB in one PATCH (requests + file object), "
                  f"median of {args.rounds}:")  # fmt: skip
            for label, figures in results.items():
                print(f"  {label:<38} {figures.text()} MB/s, "
                      f"server CPU {figures.cpu_per_gb:.2f} s/GB")  # fmt: skip
        finally:
            for server, _ in servers.values():
                server.stop()
            redis_proc.stop()


if __name__ == "__main__":
    main()
