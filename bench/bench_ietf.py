"""IETF draft uploads against tus uploads of the same file, beside this machine's limits.

Run: .venv/bin/python bench/bench_ietf.py [--size-mib 1024] [--rounds 3]
Prints figures; it is not a pass/fail test. In one run, with one server (a real process,
tokens file) and its redis-server in a temp dir on one filesystem:

* the limits: ``md5sum`` of a random file (page-cached, 2nd run) and a plain disk write of
  it (``dd bs=4M conv=fdatasync``);
* that file, alternating, ``--rounds`` times each, sent by the same raw-socket client
  (``socket.sendfile``: the client costs next to nothing) as
  - tus: creation, then one PATCH with the whole file;
  - IETF interop 8: one creation with ``Upload-Complete: ?1`` and the whole file, the
    content sent once the 104 has arrived;
  - IETF interop 8: an empty creation with ``?0``, then one append with ``?1``;
  each checked against the staged file's md5 (the sidecar's), with wall-clock MB/s and the
  server's CPU seconds per GB.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_upload import Bench, interleaved_rounds, running_server, write_random
from bench.machine import cpu_lines, disk_limits, load_average
from protocol.headers import OFFSET_OCTET_STREAM, TUS_VERSION
from tests.ietf_client import IetfClient
from tests.raw_http import RawConnection, RawResponse

MiB = 1024 * 1024


class Uploads:
    """The three ways of sending one file; each returns its seconds, from the first byte of
    the request that carries the content to its answer."""

    def __init__(self, bench: Bench, path: Path, md5: str) -> None:
        self.bench = bench
        self.path = path
        self.size = path.stat().st_size
        self.md5 = md5
        self.ietf = IetfClient(bench.server, bench.token, 8)

    def send_file(self, connection: RawConnection) -> list[RawResponse]:
        with open(self.path, "rb") as handle:
            connection.sock.sendfile(handle)
        return connection.responses()

    def finish(self, name: str, answer: RawResponse, status: int, start: float) -> float:
        seconds = time.perf_counter() - start
        if answer.status != status:
            raise SystemExit(f"{name}: answered {answer.status} {answer.body[:300]!r}")
        self.bench.check_and_remove(name, self.size, self.md5)
        return seconds

    def tus(self) -> float:
        name = self.bench.new_name("tus")
        url = self.bench.client.create_url(self.size, name)
        start = time.perf_counter()
        with RawConnection(url) as connection:
            connection.send_head(
                "PATCH",
                url.removeprefix(self.bench.server.url),
                {
                    "Authorization": f"Bearer {self.bench.token}",
                    "Tus-Resumable": TUS_VERSION,
                    "Upload-Offset": "0",
                    "Content-Type": OFFSET_OCTET_STREAM,
                    "Content-Length": str(self.size),
                },
            )
            answer = self.send_file(connection)[-1]
        return self.finish(name, answer, 204, start)

    def ietf_creation(self) -> float:
        name = self.bench.new_name("ietf-creation")
        start = time.perf_counter()
        with self.ietf.start_creation(self.size, name, complete=True) as connection:
            if connection.read_response().status != 104:
                raise SystemExit("no 104 before the content")
            answer = self.send_file(connection)[-1]
        return self.finish(name, answer, 201, start)

    def ietf_append(self) -> float:
        name = self.bench.new_name("ietf-append")
        path = self.ietf.create(complete=False, name=name).location
        start = time.perf_counter()
        with self.ietf.start_append(path, 0, self.size, complete=True) as connection:
            answer = self.send_file(connection)[-1]
        return self.finish(name, answer, 200, start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="size of the uploaded file")
    parser.add_argument("--rounds", type=int, default=3, help="uploads of each kind")
    args = parser.parse_args()
    size = args.size_mib * MiB
    for line in cpu_lines():
        print(line)
    with tempfile.TemporaryDirectory(prefix="bench-ietf-") as tmp_name:
        tmp = Path(tmp_name)
        path = tmp / "random.bin"
        write_random(path, size)
        limits = disk_limits(path)
        md5, md5sum_rate, dd_rate = limits.md5, limits.md5sum_rate, limits.dd_rate
        print(limits.text())
        with running_server(tmp) as (_, server):
            bench = Bench(server)
            uploads = Uploads(bench, path, md5)
            kinds = {
                "tus: creation, one PATCH": (bench, uploads.tus),
                "IETF 8: creation ?1 with the content": (bench, uploads.ietf_creation),
                "IETF 8: creation ?0, one append ?1": (bench, uploads.ietf_append),
            }
            runs = interleaved_rounds(kinds, size, args.rounds)
    print(f"load average {load_average()} at the end (the machine may be shared)")
    print(f"\n{args.size_mib} MiB, median of {args.rounds} (every run in brackets):\n")
    print("| upload | MB/s | vs md5sum | vs dd | server CPU s/GB |")
    print("|---|---:|---:|---:|---:|")
    for label, figures in runs.items():
        print(
            f"| {label} | {figures.text()} | {figures.rate / md5sum_rate:.2f} "
            f"| {figures.rate / dd_rate:.2f} | {figures.cpu_per_gb:.2f} |"
        )


if __name__ == "__main__":
    main()
