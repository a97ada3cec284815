"""Where md5 lanes pay in the real server: N concurrent uploads, server CPU per GB, for each
routing of md5 (lanes off, or a kernel sent updates from K streams on).

Run: .venv/bin/python bench/bench_md5_routing.py [--streams 1,2,3,4,8] [--mib 64]
     [--rounds 3] [--settings off,avx2:2,avx2:3]

One server per setting (``--workers 1``, a Redis of its own, in one temp dir): ``off`` is
``--no-md5-lanes`` (libcrypto in the block threads); ``NAME:K`` is
``TUS_STAGING_MD5_KERNEL=NAME:K``, kernel NAME with updates sent to the engine while K or
more uploads stream. For each N, N client processes send one file each in one PATCH
(while a HEAD every 20 ms probes the server, as in bench_suite.py); rounds interleave the
settings, so that load from other processes spreads over all of them. Prints the median
server CPU seconds per GB (its processes and its Redis), the aggregate MB/s and the share
of md5 updates that went through the engine; md5sum and dd fdatasync as this machine's
limits, measured in the same run. Figures, not pass/fail.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import statistics
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_suite import (
    MD5_SERIES,
    Target,
    concurrent_uploads,
    md5_counters,
    probe_upload,
)
from bench.bench_upload import Bench, running_server, write_random
from bench.machine import cpu_lines, disk_limits, load_average
from store import md5_lanes
from tests.servers import RedisProcess, ServerProcess

MiB = 1 << 20


@dataclass
class Cell:
    """One setting at one N: a figure per round."""

    cpu_per_gb: list[float] = field(default_factory=list)
    rates: list[float] = field(default_factory=list)
    engine_share: list[float] = field(default_factory=list)

    def text(self) -> str:
        cpu = statistics.median(self.cpu_per_gb)
        spread = "/".join(f"{c:.2f}" for c in self.cpu_per_gb)
        engine = statistics.median(self.engine_share)
        return f"**{cpu:.2f}** ({spread}) | {statistics.median(self.rates):.0f} | {engine:.0%}"


def server_for(
    setting: str, tmp: Path
) -> contextlib.AbstractContextManager[tuple[RedisProcess, ServerProcess]]:
    name = setting.replace(":", "-")
    if setting == "off":
        return running_server(tmp, name, ["--no-md5-lanes"])
    return running_server(tmp, name, env={md5_lanes.KERNEL_ENV: setting})


def engine_share(before: dict[str, float], after: dict[str, float]) -> float:
    counted = {
        path: after.get(f'{MD5_SERIES}updates_total{{path="{path}"}}', 0.0)
        - before.get(f'{MD5_SERIES}updates_total{{path="{path}"}}', 0.0)
        for path in ("lanes", "inline")
    }
    total = counted["lanes"] + counted["inline"]
    return counted["lanes"] / total if total else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", default="1,2,3,4,8", help="concurrent uploads, each run")
    parser.add_argument("--mib", type=int, default=64, help="MiB of each upload")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (medians reported)")
    parser.add_argument(
        "--settings",
        help="comma-separated: off, NAME:K (default: off and the best kernel at 2 and 3)",
    )
    args = parser.parse_args()
    counts = [int(n) for n in args.streams.split(",")]
    best = md5_lanes.kernels()[0] if md5_lanes.built() else "portable"
    settings = (args.settings or f"off,{best}:2,{best}:3").split(",")
    load_start = load_average()
    cells = {(s, n): Cell() for s in settings for n in counts}
    with tempfile.TemporaryDirectory(prefix="bench-md5-routing-") as tmp_name:
        tmp = Path(tmp_name)
        with contextlib.ExitStack() as stack:
            servers = {s: stack.enter_context(server_for(s, tmp)) for s in settings}
            pool = multiprocessing.get_context("fork").Pool(max(counts))
            stack.callback(pool.join)
            stack.callback(pool.terminate)  # first: the clients end before their servers stop
            files = [tmp / f"part-{i}.bin" for i in range(max(counts))]
            digests = [write_random(f, args.mib * MiB) for f in files]
            limits = disk_limits(files[0])
            probes = {s: probe_upload(server.files_url) for s, (_, server) in servers.items()}
            for round_ in range(1, args.rounds + 1):
                for n in counts:
                    for setting, (redis_proc, server) in servers.items():
                        print(f"round {round_}: {n} uploads, {setting}", flush=True)
                        assert server.process is not None
                        target = Target(
                            setting, server.files_url, server.process.pid, server.data_dir,
                            redis_proc,
                        )  # fmt: skip
                        before = md5_counters(server.files_url)
                        result, usage = concurrent_uploads(target, files[:n], probes[setting], pool)
                        after = md5_counters(server.files_url)
                        for f, digest in zip(files[:n], digests, strict=False):
                            Bench(server).check_and_remove(f.name, args.mib * MiB, digest)
                        cell = cells[setting, n]
                        cell.cpu_per_gb.append(usage.cpu / (result.nbytes / 1e9))
                        cell.rates.append(result.nbytes / result.seconds / 1e6)
                        cell.engine_share.append(engine_share(before, after))

    print(f"\n{args.mib} MiB uploads; {limits.text()}")
    print("Each cell: server CPU s/GB, median (per round) | aggregate MB/s | md5 updates "
          "through the engine\n")  # fmt: skip
    print("| uploads at once |" + "".join(f" {s} | MB/s | engine |" for s in settings))
    print("|---:|" + "---:|---:|---:|" * len(settings))
    for n in counts:
        print(f"| {n} |" + "".join(f" {cells[s, n].text()} |" for s in settings))
    print()
    for line in cpu_lines():
        print(line)
    print(
        f"--workers 1, {args.rounds} rounds; clients on the same machine. Load average at the "
        f"start {load_start}, at the end {load_average()} (other processes share the machine)."
    )


if __name__ == "__main__":
    main()
