"""Upload throughput of the real server against this machine's own limits, in one run.

Run: .venv/bin/python bench/bench_upload.py [--size-mib 1024] [--skip-tuspy] [--huge-gib 6]
Prints figures; it is not a pass/fail test.  It starts a redis-server and the server
(``python -m tus_staging.cli serve``, tokens file) in a temp dir on the same filesystem
as the other figures, and measures:

* the limits: ``md5sum`` of a random file (page-cached, 2nd run) and a plain disk write
  of it (``dd bs=4M conv=fdatasync``);
* the file uploaded as ONE PATCH (requests with the file object; http.client in 1 MiB
  sends), and by tuspy in 64 MiB chunks;
* finalize: from the last body byte sent (and from the server having read the whole
  body off its socket) to the 204 of the final PATCH;
* the server's peak RSS (VmHWM) after each workload;
* ``--huge-gib N``: N GiB of *generated* bytes (nothing on disk client-side, md5 computed
  while sending) in one PATCH, checked against the sidecar's md5.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import requests
from tusclient import client as tus

from bench.machine import cpu_lines, disk_limits
from protocol.headers import OFFSET_OCTET_STREAM
from tests.servers import TOKENS, RedisProcess, ServerProcess, write_tokens_file
from tests.test_large_upload import (
    GeneratedStream,
    PatchTiming,
    patch_stream,
    peak_rss,
    sidecar_of,
)
from tests.tus_client import TusTestClient

MiB = 1 << 20
GiB = 1 << 30
USER = "alice"


@dataclass
class Row:
    workload: str
    seconds: float
    nbytes: int
    notes: str = ""

    @property
    def mb_per_s(self) -> float:
        return self.nbytes / self.seconds / 1e6


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def write_random(path: Path, nbytes: int) -> str:
    """``nbytes`` (whole MiB) of random bytes in ``path``; their md5."""
    md5 = hashlib.md5()
    with open(path, "wb") as handle:
        for _ in range(nbytes // MiB):
            block = os.urandom(MiB)
            md5.update(block)
            handle.write(block)
    return md5.hexdigest()


@contextlib.contextmanager
def running_server(
    tmp: Path,
    name: str = "",
    extra_args: list[str] | None = None,
    env: dict[str, str] | None = None,
) -> Iterator[tuple[RedisProcess, ServerProcess]]:
    """A redis-server and the server (tokens file of the tests' users, ``extra_args``,
    ``env``) in ``tmp``; a ``name`` tells their files from those of others in ``tmp``."""
    suffix = f"-{name}" if name else ""
    tokens = write_tokens_file(tmp / f"tokens{suffix}.txt")
    redis_proc = RedisProcess(tmp / f"redis{suffix}")
    server = ServerProcess(tmp / f"data{suffix}", redis_proc.url, tokens, extra_args, env)
    try:
        redis_proc.start()
        server.start()
        yield redis_proc, server
    finally:
        server.stop()
        redis_proc.stop()


def ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1e3:.0f} ms"


class Bench:
    def __init__(self, server: ServerProcess):
        self.server = server
        self.token = TOKENS[USER]
        self.client = TusTestClient(server.files_url, self.token)
        assert server.process is not None
        self.pid = server.process.pid
        self.count = 0
        self.cpu_mark = self.cpu_seconds()

    def new_name(self, stem: str) -> str:
        self.count += 1
        return f"{stem}-{self.count}.bin"

    def cpu_seconds(self) -> float:
        """The server's user + system CPU time so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss(self) -> str:
        """Server VmHWM, and the server's CPU time since the previous call."""
        cpu = self.cpu_seconds()
        spent, self.cpu_mark = cpu - self.cpu_mark, cpu
        return f"server VmHWM {peak_rss(self.pid) / 1e6:.1f} MB, server CPU {spent:.1f} s"

    def check_and_remove(self, filename: str, size: int, md5: str) -> None:
        """The sidecar describes what was sent; then free the disk for the next workload."""
        record = sidecar_of(self.server.data_dir, USER, filename)
        staged = self.server.data_dir / "staging" / USER / filename
        if record["md5"] != md5 or record["size"] != size or staged.stat().st_size != size:
            raise SystemExit(f"{filename}: sidecar {record} does not match md5 {md5}, size {size}")
        staged.unlink()
        (self.server.data_dir / "metadata" / USER / filename).unlink()

    def requests_file_object(self, path: Path, md5: str) -> float:
        name = self.new_name("requests")
        size = path.stat().st_size
        url = self.client.create_url(size, name)
        headers = self.client.headers(Upload_Offset="0", Content_Type=OFFSET_OCTET_STREAM)
        start = time.perf_counter()
        with open(path, "rb") as handle:
            response = requests.patch(url, data=handle, headers=headers, timeout=3600)
        seconds = time.perf_counter() - start
        if response.status_code != 204:
            raise SystemExit(f"PATCH answered {response.status_code}: {response.text}")
        self.check_and_remove(name, size, md5)
        return seconds

    def http_client_chunks(self, path: Path, md5: str) -> PatchTiming:
        name = self.new_name("httpclient")
        size = path.stat().st_size
        url = self.client.create_url(size, name)

        def chunks() -> Iterator[bytes]:
            with open(path, "rb") as handle:
                while block := handle.read(MiB):
                    yield block

        timing = patch_stream(url, self.token, 0, size, chunks())
        if timing.status != 204:
            raise SystemExit(f"PATCH answered {timing.status}")
        self.check_and_remove(name, size, md5)
        return timing

    def tuspy(self, path: Path, md5: str, chunk: int) -> float:
        name = self.new_name("tuspy")
        headers = {"Authorization": f"Bearer {self.token}"}
        uploader = tus.TusClient(self.server.files_url, headers=headers).uploader(
            file_path=str(path), chunk_size=chunk, metadata={"filename": name}
        )
        seconds = timed(uploader.upload)
        self.check_and_remove(name, path.stat().st_size, md5)
        return seconds

    def generated(self, total: int) -> PatchTiming:
        name = self.new_name("generated")
        url = self.client.create_url(total, name)
        stream = GeneratedStream()
        timing = patch_stream(url, self.token, 0, total, stream.read(total))
        if timing.status != 204:
            raise SystemExit(f"PATCH answered {timing.status}: {self.server.log()}")
        self.check_and_remove(name, total, stream.hexdigest())
        return timing


@dataclass
class RoundFigures:
    """One workload's MB/s and its server's CPU seconds per GB, a pair per round."""

    runs: list[tuple[float, float]] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return statistics.median(rate for rate, _ in self.runs)

    @property
    def cpu_per_gb(self) -> float:
        return statistics.median(cpu for _, cpu in self.runs)

    def text(self) -> str:
        """The median MB/s, every round's in brackets."""
        return f"{self.rate:.0f} ({', '.join(f'{rate:.0f}' for rate, _ in self.runs)})"


def interleaved_rounds(
    workloads: dict[str, tuple[Bench, Callable[[], float]]], nbytes: int, rounds: int
) -> dict[str, RoundFigures]:
    """Each workload (an upload of ``nbytes`` to its bench's server, returning its seconds)
    once per round, in turn, so that drifts of the machine hit them all."""
    figures = {label: RoundFigures() for label in workloads}
    for _ in range(rounds):
        for label, (bench, upload) in workloads.items():
            before = bench.cpu_seconds()
            seconds = upload()
            cpu = bench.cpu_seconds() - before
            figures[label].runs.append((nbytes / seconds / 1e6, cpu / (nbytes / 1e9)))
    return figures


def generator_alone(total: int) -> float:
    """The client-side ceiling of a generated upload: producing and hashing, no sending."""
    stream = GeneratedStream()

    def consume() -> None:
        for _ in stream.read(total):
            pass

    return timed(consume)


def finalize_notes(timing: PatchTiming) -> str:
    queued = "n/a" if timing.server_rx_queue is None else f"{timing.server_rx_queue / MiB:.1f} MiB"
    return (
        f"finalize: last byte → 204 {ms(timing.after_last_byte)} "
        f"({queued} still in the server's socket), "
        f"body read → 204 {ms(timing.after_drained)}"
    )


def print_table(rows: list[Row], md5sum_rate: float | None, dd_rate: float | None) -> None:
    def ratio(rate: float, limit: float | None) -> str:
        return "" if limit is None else f"{rate / limit:.2f}"

    # One upload can go no faster than the slower of its md5 and the disk.
    limit = min(md5sum_rate, dd_rate) if md5sum_rate and dd_rate else None
    print()
    print("| workload | MB/s | × min(md5sum, dd) | × md5sum | × dd | notes |")
    print("|---|---:|---:|---:|---:|---|")
    for row in rows:
        rate = row.mb_per_s
        print(
            f"| {row.workload} | {rate:.0f} | {ratio(rate, limit)} | {ratio(rate, md5sum_rate)} "
            f"| {ratio(rate, dd_rate)} | {row.notes} |"
        )
    print()
    for line in cpu_lines():
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="size of the file (0: none)")
    parser.add_argument("--skip-tuspy", action="store_true", help="no tuspy upload")
    parser.add_argument(
        "--huge-gib", type=float, default=0, help="also upload N GiB of generated bytes"
    )
    parser.add_argument("--tuspy-chunk-mib", type=int, default=64, help="tuspy chunk size")
    args = parser.parse_args()
    size = args.size_mib * MiB
    rows: list[Row] = []
    md5sum_rate = dd_rate = None

    def row(label: str, seconds: float, nbytes: int, notes: str = "") -> None:
        rows.append(Row(label, seconds, nbytes, notes))
        print(
            f"{label:<52} {seconds:8.3f} s {nbytes / seconds / 1e6:9.0f} MB/s  {notes}", flush=True
        )

    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    print(f"{'':<52} {'wall':>10} {'throughput':>14}")
    with tempfile.TemporaryDirectory(prefix="bench-upload-") as tmp_name:
        tmp = Path(tmp_name)
        with running_server(tmp) as (_, server):
            bench = Bench(server)
            print(f"{'server idle':<52} {'':>26}  {bench.rss()}")
            if size:
                path = tmp / "random.bin"
                write_random(path, size)
                limits = disk_limits(path)
                md5, md5sum_rate, dd_rate = limits.md5, limits.md5sum_rate, limits.dd_rate
                row("md5sum (page-cached, 2nd run)", limits.md5sum_seconds, size)
                row("dd bs=4M conv=fdatasync (same filesystem)", limits.dd_seconds, size)
                label = f"{args.size_mib} MiB, one PATCH, requests + file object"
                row(label, bench.requests_file_object(path, md5), size, bench.rss())
                timing = bench.http_client_chunks(path, md5)
                label = f"{args.size_mib} MiB, one PATCH, http.client 1 MiB sends"
                row(label, timing.seconds, size, f"{bench.rss()}; {finalize_notes(timing)}")
                if not args.skip_tuspy:
                    chunk = args.tuspy_chunk_mib * MiB
                    label = f"{args.size_mib} MiB, tuspy, {args.tuspy_chunk_mib} MiB chunks"
                    row(label, bench.tuspy(path, md5, chunk), size, bench.rss())
                path.unlink()
            if args.huge_gib:
                total = int(args.huge_gib * GiB)
                reference = min(total, GiB)
                row(
                    "generator + hashlib.md5 alone (client ceiling)",
                    generator_alone(reference),
                    reference,
                    "no server involved",
                )
                timing = bench.generated(total)
                label = f"{args.huge_gib:g} GiB generated stream, one PATCH, md5 ok"
                row(label, timing.seconds, total, f"{bench.rss()}; {finalize_notes(timing)}")
    print_table(rows, md5sum_rate, dd_rate)


if __name__ == "__main__":
    main()
