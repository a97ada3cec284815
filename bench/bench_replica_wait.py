"""What waiting for a replica (WAIT) costs each checkpoint, beside this machine's limits.

Run: .venv/bin/python bench/bench_replica_wait.py [--size-mib 512] [--checkpoint-mib 8]
     [--rounds 3] [--commits 1000]
Prints figures; it is not a pass/fail test. Everything runs on loopback, in one temp dir,
with Redis as the tests run it (append-only, fsync on every write). Three settings:

* ``alone``: a master without replicas (nothing to wait for);
* ``replica``: a master with a replica, ``--wait-replicas 0`` (replication, no WAIT);
* ``WAIT``: the same master and replica, ``--wait-replicas 1`` (the default).

And, in the same run:

* the limits: a Redis round trip (PING) to the master; a 4 KiB write + fdatasync in the
  data directory (the floor under a checkpoint's own fsync); ``md5sum`` of the upload
  file (page-cached, 2nd run) and ``dd bs=4M conv=fdatasync`` of it;
* the checkpoint's Redis step alone (the guarded commit of StateStore.update),
  ``--commits`` in a row by one writer and by 8 writers at once: mean and p99 per commit;
* the file as one PATCH (a checkpoint every ``--checkpoint-mib``) and 8 concurrent
  PATCHes of an eighth of it each, against a server per setting, rounds interleaved:
  median MB/s (every round's in brackets), and for ``WAIT`` the mean time of a write
  with its WAIT from the server's own histogram (tus_staging_replica_wait_seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import redis.asyncio as aioredis

from bench.bench_suite import send_file
from bench.bench_upload import write_random
from bench.machine import cpu_lines, disk_limits, load_average
from store.locks import LockSettings, acquire_lock
from store.record import UploadRecord, new_upload_id
from store.replication import ReplicatedWrites, ReplicaWaitSettings
from store.state_store import StateStore
from tests.servers import (
    TOKENS,
    RedisProcess,
    ServerProcess,
    free_port,
    metric_values,
    wait_until,
    write_tokens_file,
)
from tests.test_large_upload import patch_stream
from tests.topologies import SYNC_AT_ONCE, replicas_online
from tests.tus_client import TusTestClient

MiB = 1 << 20
WRITERS = 8
SETTINGS = ("alone", "replica", "WAIT")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def rounds_text(figures: list[float]) -> str:
    every = ", ".join(f"{figure:.0f}" for figure in figures)
    return f"{statistics.median(figures):.0f} MB/s ({every})"


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f} ms"


# -- limits -----------------------------------------------------------------------------------


async def ping_times(port: int, count: int) -> list[float]:
    client = aioredis.Redis(port=port)
    try:
        await client.ping()
        times = []
        for _ in range(count):
            started = time.perf_counter()
            await client.ping()
            times.append(time.perf_counter() - started)
        return times
    finally:
        await client.aclose()


def fdatasync_times(directory: Path, count: int) -> list[float]:
    path = directory / "fsync-probe"
    block = os.urandom(4096)
    times = []
    with open(path, "wb") as handle:
        for _ in range(count):
            started = time.perf_counter()
            handle.write(block)
            handle.flush()
            os.fdatasync(handle.fileno())
            times.append(time.perf_counter() - started)
    path.unlink()
    return times


# -- the commit alone ---------------------------------------------------------------------------


async def commit_times(port: int, replicas: int, commits: int, writers: int) -> list[float]:
    """Seconds per guarded commit (StateStore.update of the offset), ``writers`` at once."""
    client = aioredis.Redis(port=port)
    store = StateStore(client, ReplicatedWrites(client, ReplicaWaitSettings(replicas=replicas)))
    times: list[float] = []

    async def writer() -> None:
        record = UploadRecord(
            id=new_upload_id(), owner="bench", length=None, offset=0, metadata="", destination="f"
        )
        await store.create(record)
        lock = await acquire_lock(client, record.id, LockSettings())
        for offset in range(1, commits // writers + 1):
            started = time.perf_counter()
            await store.update(
                lock, replace(record, offset=offset), ["offset"], expect_offset=offset - 1
            )
            times.append(time.perf_counter() - started)
        await lock.release()

    try:
        await asyncio.gather(*(writer() for _ in range(writers)))
        return times
    finally:
        await client.aclose()


# -- PATCHes ------------------------------------------------------------------------------------


class Setting:
    def __init__(self, name: str, master: RedisProcess, server: ServerProcess):
        self.name = name
        self.master = master
        self.server = server
        self.client = TusTestClient(server.files_url, TOKENS["alice"])
        self.single: list[float] = []  # MB/s
        self.concurrent: list[float] = []
        self.wait_sum = 0.0
        self.wait_count = 0.0

    def waits(self) -> tuple[float, float]:
        values = metric_values(self.server.url)
        return (
            values.get("tus_staging_replica_wait_seconds_sum", 0.0),
            values.get("tus_staging_replica_wait_seconds_count", 0.0),
        )

    def one_patch(self, path: Path) -> None:
        size = path.stat().st_size
        url = self.client.create_url(size, f"single-{time.monotonic_ns()}.bin")
        os.sync()
        before = self.waits()
        with open(path, "rb") as handle:
            timing = patch_stream(
                url, TOKENS["alice"], 0, size, iter(lambda: handle.read(MiB), b"")
            )
        if timing.status != 204:
            raise SystemExit(f"{self.name}: PATCH answered {timing.status}")
        self.count_waits(before)
        self.single.append(size / (timing.answered - timing.started) / 1e6)

    def eight_patches(self, files: list[Path], pool: multiprocessing.pool.Pool) -> None:
        urls = [
            self.client.create_url(f.stat().st_size, f"eighth-{i}-{time.monotonic_ns()}.bin")
            for i, f in enumerate(files)
        ]
        os.sync()
        before = self.waits()
        results = pool.starmap(
            send_file, [(u, TOKENS["alice"], str(f)) for u, f in zip(urls, files, strict=True)]
        )
        if any(status != 204 for status, _, _ in results):
            raise SystemExit(f"{self.name}: concurrent PATCHes answered {results}")
        self.count_waits(before)
        seconds = max(r[2] for r in results) - min(r[1] for r in results)
        self.concurrent.append(sum(f.stat().st_size for f in files) / seconds / 1e6)

    def count_waits(self, before: tuple[float, float]) -> None:
        after = self.waits()
        self.wait_sum += after[0] - before[0]
        self.wait_count += after[1] - before[1]

    def clean(self) -> None:
        for directory in ("staging", "metadata"):
            for path in (self.server.data_dir / directory / "alice").glob("*.bin"):
                path.unlink()


@contextlib.contextmanager
def settings(tmp: Path, checkpoint_mib: int) -> Iterator[list[Setting]]:
    tokens = write_tokens_file(tmp / "tokens.txt")
    alone = RedisProcess(tmp / "alone", port=free_port())
    master = RedisProcess(tmp / "master", port=free_port(), extra_args=SYNC_AT_ONCE)
    replica = RedisProcess(
        tmp / "replica", port=free_port(), extra_args=["--replicaof", "127.0.0.1", str(master.port)]
    )
    servers = []
    try:
        for process in (alone, master, replica):
            process.start()
        wait_until(lambda: replicas_online(master) >= 1, 30, "the replica in sync")
        made = []
        for name, redis_proc, wait in (
            ("alone", alone, 1),
            ("replica", master, 0),
            ("WAIT", master, 1),
        ):
            server = ServerProcess(
                tmp / f"data-{name}", redis_proc.url, tokens,
                ["--checkpoint-bytes", f"{checkpoint_mib}M", "--wait-replicas", str(wait)],
            )  # fmt: skip
            server.start()
            servers.append(server)
            made.append(Setting(name, redis_proc, server))
        yield made
    finally:
        for server in servers:
            server.stop()
        for process in (replica, master, alone):
            process.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=512, help="the file of the PATCHes")
    parser.add_argument("--checkpoint-mib", type=int, default=8, help="--checkpoint-bytes")
    parser.add_argument("--rounds", type=int, default=3, help="PATCH rounds per setting")
    parser.add_argument("--commits", type=int, default=1000, help="commits per measure")
    args = parser.parse_args()
    started = time.perf_counter()
    for line in cpu_lines():
        print(line)
    with tempfile.TemporaryDirectory(prefix="bench-wait-") as name:
        tmp = Path(name)
        source = tmp / "upload.bin"
        write_random(source, args.size_mib * MiB)
        eighths = [tmp / f"eighth-{i}.bin" for i in range(WRITERS)]
        for index, part in enumerate(eighths):
            with open(source, "rb") as whole, open(part, "wb") as handle:
                whole.seek(index * source.stat().st_size // WRITERS)
                handle.write(whole.read(source.stat().st_size // WRITERS))
        print(f"\nlimits: {disk_limits(source).text()}")
        fsyncs = fdatasync_times(tmp, 200)
        print(f"limits: 4 KiB write + fdatasync mean {ms(statistics.mean(fsyncs))}, "
              f"p99 {ms(percentile(fsyncs, 0.99))}")  # fmt: skip

        with settings(tmp, args.checkpoint_mib) as made:
            by_name = {setting.name: setting for setting in made}
            pings = asyncio.run(ping_times(by_name["WAIT"].master.port, args.commits))
            print(f"limits: Redis PING round trip mean {ms(statistics.mean(pings))}, "
                  f"p99 {ms(percentile(pings, 0.99))}")  # fmt: skip

            print(f"\nthe commit alone ({args.commits} commits), mean / p99 per commit:")
            print("| setting | 1 writer | 8 writers at once |")
            print("|---|---|---|")
            for name in SETTINGS:
                setting = by_name[name]
                replicas = 0 if name == "replica" else 1
                row = []
                for writers in (1, WRITERS):
                    times = asyncio.run(
                        commit_times(setting.master.port, replicas, args.commits, writers)
                    )
                    row.append(f"{ms(statistics.mean(times))} / {ms(percentile(times, 0.99))}")
                print(f"| {name} | {row[0]} | {row[1]} |")

            with multiprocessing.Pool(WRITERS) as pool:
                for _ in range(args.rounds):
                    for setting in made:
                        setting.one_patch(source)
                        setting.clean()
                        setting.eight_patches(eighths, pool)
                        setting.clean()

            checkpoints = args.size_mib // args.checkpoint_mib
            print(f"\nPATCHes of {args.size_mib} MiB (one, and 8 of {args.size_mib // 8} MiB at "
                  f"once), a checkpoint every {args.checkpoint_mib} MiB (~{checkpoints} per "
                  f"file), median of {args.rounds}:")  # fmt: skip
            print("| setting | one PATCH | 8 PATCHes at once | mean write + WAIT |")
            print("|---|---|---|---|")
            for setting in made:
                mean_wait = ms(setting.wait_sum / setting.wait_count) if setting.wait_count else "—"
                print(
                    f"| {setting.name} | {rounds_text(setting.single)} "
                    f"| {rounds_text(setting.concurrent)} | {mean_wait} |"
                )
    print(f"\nruntime {time.perf_counter() - started:.0f} s, load average {load_average()}")


if __name__ == "__main__":
    main()
