"""The md5 lanes engine: aggregate md5 of N streams at once against md5sum and libcrypto.

Run: .venv/bin/python bench/bench_md5_lanes.py [--mib 64]
Each of N threads hashes its own ``--mib`` MiB (in memory) in 1 MiB updates, as N uploads'
block threads do; the engine puts them in lanes. Prints aggregate MB/s, CPU seconds per
GB, the mean streams per lockstep pass, and md5sum of a page-cached file of the same size
as the machine's one-stream limit, measured in the same run. Figures, not pass/fail.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from store import md5_lanes
from store.digest import ResumableDigest

MiB = 1 << 20


def md5sum_rate(data: bytes) -> float:
    with tempfile.NamedTemporaryFile() as handle:
        handle.write(data)
        handle.flush()
        subprocess.run(["md5sum", handle.name], check=True, capture_output=True)  # cache it
        start = time.perf_counter()
        subprocess.run(["md5sum", handle.name], check=True, capture_output=True)
        return len(data) / (time.perf_counter() - start) / 1e6


def streams(count: int, data: bytes, engine: bool) -> tuple[float, float, float]:
    """Aggregate MB/s, CPU s/GB and mean lanes per pass for ``count`` streams at once."""
    view = memoryview(data)
    updates = [view[i : i + MiB] for i in range(0, len(data), MiB)]

    def one() -> None:
        digest = ResumableDigest.new("md5")
        for update in updates:
            if engine:
                digest.update_all([update])
            else:
                digest.update(update)

    threads = [threading.Thread(target=one) for _ in range(count)]
    before = md5_lanes.stats()
    cpu, start = time.process_time(), time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    after = md5_lanes.stats()
    passes = after.get("pass_blocks", 0) - before.get("pass_blocks", 0)
    lanes = (after.get("lane_blocks", 0) - before.get("lane_blocks", 0)) / passes if passes else 0
    total = count * len(data)
    return total / seconds / 1e6, cpu / (total / 1e9), lanes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=64, help="MiB hashed by each stream")
    args = parser.parse_args()
    if not md5_lanes.lanes():
        raise SystemExit("md5 lanes are not available here (extension not built, or no AVX-512)")
    data = os.urandom(args.mib * MiB)
    limit = md5sum_rate(data)
    print(f"md5sum, one stream (page-cached {args.mib} MiB file): {limit:.0f} MB/s")
    print("| streams | libcrypto, a thread each | × md5sum | md5 lanes engine | × md5sum "
          "| engine CPU s/GB | streams per pass |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for count in (1, 2, 3, 4, 8, 16):
        plain, _, _ = streams(count, data, engine=False)
        rate, cpu, lanes = streams(count, data, engine=True)
        per_pass = f"{lanes:.1f}" if lanes else "—"
        print(f"| {count} | {plain:.0f} MB/s | {plain / limit:.2f} | {rate:.0f} MB/s "
              f"| {rate / limit:.2f} | {cpu:.2f} | {per_pass} |")  # fmt: skip
    print(f"{os.cpu_count()} CPUs; libcrypto threads run on all of them, the engine on one.")


if __name__ == "__main__":
    main()
