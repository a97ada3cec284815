"""The md5 lanes engine on every kernel this CPU runs, against md5sum and libcrypto threads.

Run: .venv/bin/python bench/bench_md5_lanes.py [--mib 32] [--runs 3]
N threads (N = 1, 2, 3, 4, 8, 16) each hash ``--mib`` MiB (in memory) in 1 MiB updates, as
N uploads' block threads do, hashed by:

* libcrypto: ``MD5_Update`` in each thread, on all cores (what runs without the engine);
* each kernel (avx512, avx2; portable: the engine's plain C, one stream at a time) with
  every update sent into its lanes, even alone: what a pass costs at N streams;
* each vector kernel routed as in the server: libcrypto in the caller's thread below the
  kernel's threshold, the engine from there on.

Printed: aggregate MB/s, the process's CPU seconds per GB (what decides how many uploads a
host carries), mean streams per lockstep pass; md5sum of a page-cached file of the same
bytes as the one-stream limit, measured in the same run; from how many streams each
kernel's CPU per GB beats libcrypto's. Medians of ``--runs``. Figures, not pass/fail.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import cpu_lines, load_average, md5sum_twice
from store import md5_lanes
from store.digest import ResumableDigest

MiB = 1 << 20
STREAMS = (1, 2, 3, 4, 8, 16)


@dataclass
class Figures:
    rate: float  # aggregate MB/s
    cpu_per_gb: float  # CPU seconds of the whole process per GB hashed
    per_pass: float  # mean streams per lockstep pass (0: none ran)


def md5sum_rate(data: bytes) -> float:
    with tempfile.NamedTemporaryFile() as handle:
        handle.write(data)
        handle.flush()
        _, seconds = md5sum_twice(Path(handle.name))
        return len(data) / seconds / 1e6


Hasher = Callable[[ResumableDigest, memoryview], None]


def by_libcrypto(digest: ResumableDigest, update: memoryview) -> None:
    digest.update(update)


def by_engine(digest: ResumableDigest, update: memoryview) -> None:
    md5_lanes.update(digest._ctx, [update], to_engine=True)


def routed(digest: ResumableDigest, update: memoryview) -> None:
    digest.update_all([update])  # as the server's block threads do


def streams(count: int, data: bytes, hasher: Hasher) -> Figures:
    """``count`` threads at once, each hashing ``data`` in 1 MiB updates."""
    view = memoryview(data)
    updates = [view[i : i + MiB] for i in range(0, len(data), MiB)]
    digests = [ResumableDigest.new("md5") for _ in range(count)]

    def one(digest: ResumableDigest) -> None:
        for update in updates:
            hasher(digest, update)

    threads = [threading.Thread(target=one, args=(d,)) for d in digests]
    before = md5_lanes.stats()
    cpu, start = time.process_time(), time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    after = md5_lanes.stats()
    reference = ResumableDigest.new("md5")
    reference.update(data)
    if any(d.hexdigest() != reference.hexdigest() for d in digests):
        raise SystemExit(f"{count} streams: a digest differs from libcrypto's")
    pass_blocks = after["pass_blocks"] - before["pass_blocks"]
    lane_blocks = after["lane_blocks"] - before["lane_blocks"]
    total = count * len(data)
    return Figures(
        total / seconds / 1e6, cpu / (total / 1e9), lane_blocks / pass_blocks if pass_blocks else 0
    )


def median_of(runs: int, measure: Callable[[], Figures]) -> Figures:
    results = [measure() for _ in range(runs)]
    return Figures(
        statistics.median(r.rate for r in results),
        statistics.median(r.cpu_per_gb for r in results),
        statistics.median(r.per_pass for r in results),
    )


def on_kernel(name: str | None, min_streams: int, count: int, data: bytes, hasher: Hasher):
    def measure() -> Figures:
        md5_lanes.use_kernel(name, min_streams=min_streams)
        return streams(count, data, hasher)

    return measure


def print_figures(groups: dict[str, dict[int, Figures]], limit: float) -> None:
    """A markdown table: a row per stream count, four columns per group of figures."""
    header = ["streams"]
    for name in groups:
        header += [name, "× md5sum", "CPU s/GB", "per pass"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---:|" * len(header))
    for n in STREAMS:
        row = [str(n)]
        for figures in groups.values():
            f = figures[n]
            per_pass = f"{f.per_pass:.1f}" if f.per_pass else "—"
            row += [f"{f.rate:.0f} MB/s", f"{f.rate / limit:.2f}", f"{f.cpu_per_gb:.2f}", per_pass]
        print("| " + " | ".join(row) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=32, help="MiB hashed by each stream")
    parser.add_argument("--runs", type=int, default=3, help="runs of each figure (median)")
    args = parser.parse_args()
    if not md5_lanes.built():
        raise SystemExit("the md5 lanes extension is not built here")
    load_start = load_average()
    data = os.urandom(args.mib * MiB)
    limit = md5sum_rate(data)
    kernels = md5_lanes.kernels()
    vector = [k for k in kernels if k != "portable"]
    default = md5_lanes.kernel()
    assert default is not None
    thresholds = {}
    for name in vector:
        md5_lanes.use_kernel(name)
        thresholds[name] = md5_lanes.kernel().min_streams  # type: ignore[union-attr]

    plain = {n: median_of(args.runs, on_kernel(None, 0, n, data, by_libcrypto)) for n in STREAMS}
    forced = {
        k: {n: median_of(args.runs, on_kernel(k, 1, n, data, by_engine)) for n in STREAMS}
        for k in kernels
    }
    server = {
        k: {n: median_of(args.runs, on_kernel(k, 0, n, data, routed)) for n in STREAMS}
        for k in vector
    }
    md5_lanes.use_kernel(default.name)

    print(f"md5sum, one stream (page-cached {args.mib} MiB file): {limit:.0f} MB/s\n")
    print("Every update into the kernel's lanes, even alone (MB/s aggregate, CPU s/GB, "
          "streams per pass):\n")  # fmt: skip
    print_figures({"libcrypto, a thread each": plain, **forced}, limit)
    print()
    for k in kernels:
        one = forced[k][1].cpu_per_gb / plain[1].cpu_per_gb
        if k not in thresholds:
            print(f"- {k}: one stream at a time, {one:.2f} × libcrypto's CPU per GB")
            continue
        pays = [n for n in STREAMS if forced[k][n].cpu_per_gb < plain[n].cpu_per_gb]
        print(
            f"- {k}: one stream in lanes costs {one:.2f} × libcrypto's CPU per GB; "
            + (f"lanes take less CPU per GB from {pays[0]} stream(s)" if pays else "never less")
            + f"; the server routes updates to the engine from {thresholds[k]} streams"
        )
    if vector:
        print("\nRouted as in the server (libcrypto below the kernel's threshold):\n")
        print_figures(server, limit)
    print()
    for line in cpu_lines():
        print(line)
    print(
        f"libcrypto threads run on all CPUs, the engine on one. {args.mib} MiB a stream, median "
        f"of {args.runs} runs; load average at the start {load_start}, at the end "
        f"{load_average()} (other processes share the machine)."
    )


if __name__ == "__main__":
    main()
