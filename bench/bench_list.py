"""What /list of a big folder costs, and what it costs everyone else meanwhile.

Run: .venv/bin/python bench/bench_list.py [--files 50000]
Prints figures; it is not a pass/fail test. A folder of N files, each with a sidecar as a
tus upload leaves it, is listed three ways:

* the machine's own limits, measured here in the same run: a bare scandir + stat of the
  folder, reading and parsing every sidecar, and one json.dumps of the whole answer;
* the server's walk (store/area_listing.py + the route's sliced JSON encoding) in a worker
  thread, in process, while an asyncio loop ticks every millisecond and records how late
  each tick comes (the event loop's stall, without HTTP in the way);
* end to end: GET /list on a real server, while a client asks /test-service over and over.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path, PurePosixPath

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import cpu_lines
from store.area_listing import AreaWalk
from tests.servers import RedisProcess, ServerProcess
from tests.test_staging_isolation import make_folder_of_files
from tus_staging.staging_browse import json_array


def timed(job: Callable[[], object]) -> tuple[float, object]:
    started = time.perf_counter()
    result = job()
    return time.perf_counter() - started, result


def bare_scan(folder: Path) -> int:
    with os.scandir(folder) as scan:
        return sum(1 for item in scan if item.stat(follow_symlinks=False))


def read_sidecars(folder: Path) -> int:
    count = 0
    with os.scandir(folder) as scan:
        for item in scan:
            with open(item.path, "rb") as handle:
                count += "source" in json.loads(handle.read())
    return count


class Collections:
    """The garbage collector's passes (they hold the GIL throughout), timed."""

    def __init__(self) -> None:
        self.pauses: list[float] = []
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses.append(time.perf_counter() - self._started)

    def __enter__(self) -> Collections:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self)


async def stalls_while(job: Callable[[], object]) -> tuple[float, list[float]]:
    """Run ``job`` in a worker thread; how late each 1 ms tick of the loop came meanwhile."""
    loop = asyncio.get_running_loop()
    lateness: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        while not done.is_set():
            before = loop.time()
            await asyncio.sleep(0.001)
            lateness.append(loop.time() - before - 0.001)

    tick = asyncio.create_task(ticker())
    started = time.perf_counter()
    await loop.run_in_executor(None, job)
    took = time.perf_counter() - started
    done.set()
    await tick
    return took, lateness


def end_to_end(data_dir: Path, count: int) -> str:
    redis = RedisProcess(data_dir.parent / "redis")
    redis.start()
    server = ServerProcess(data_dir, redis.url, None)  # single-user mode: user "local"
    try:
        server.start()
        listing_done = threading.Event()
        latencies: list[float] = []

        def meanwhile() -> None:
            with requests.Session() as session:
                while not listing_done.is_set():
                    started = time.perf_counter()
                    session.get(f"{server.url}/test-service", timeout=60)
                    latencies.append(time.perf_counter() - started)
                    time.sleep(0.002)

        watcher = threading.Thread(target=meanwhile)
        watcher.start()
        time.sleep(0.5)
        idle = list(latencies)
        started = time.perf_counter()
        answer = requests.get(f"{server.url}/list/big", timeout=300)
        took = time.perf_counter() - started
        during = latencies[len(idle) :]
        listing_done.set()
        watcher.join()
        assert len(answer.json()) == count
        return (
            f"GET /list/big on the server: {took:.2f} s, {len(answer.content) / 1e6:.1f} MB; "
            f"/test-service meanwhile {len(during)} answers, median "
            f"{statistics.median(during) * 1000:.1f} ms, worst {max(during) * 1000:.0f} ms "
            f"(idle before: median {statistics.median(idle) * 1000:.1f} ms)"
        )
    finally:
        server.stop()
        redis.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=50_000)
    args = parser.parse_args()
    for line in cpu_lines():
        print(line)
    with tempfile.TemporaryDirectory(prefix="bench-list-") as temp:
        data = Path(temp) / "data"
        home, meta = data / "staging" / "local", data / "metadata" / "local"
        make_folder_of_files(home, meta, args.files)
        scan_time, _ = timed(lambda: bare_scan(home / "big"))
        read_time, _ = timed(lambda: read_sidecars(meta / "big"))
        walk = AreaWalk(home, meta, PurePosixPath("big"), show_hidden=False)
        records = list(walk)
        dumps_time, body = timed(lambda: json.dumps(records).encode())
        print(f"{args.files} files, each with its sidecar; answer {len(body) / 1e6:.1f} MB")  # type: ignore[arg-type]
        print(f"limit: scandir + stat of the folder     {scan_time:6.2f} s")
        print(f"limit: read + parse every sidecar       {read_time:6.2f} s")
        print(f"limit: one json.dumps of the answer     {dumps_time:6.2f} s (holds the GIL)")
        _, idle = asyncio.run(stalls_while(lambda: time.sleep(2)))
        idle.sort()
        print(
            f"limit: the loop's 1 ms ticks, idle      late by median "
            f"{statistics.median(idle) * 1000:.1f} ms, p99 "
            f"{idle[int(len(idle) * 0.99)] * 1000:.1f} ms, worst {idle[-1] * 1000:.1f} ms "
            "(the machine's own scheduling)"
        )
        with Collections() as collections:
            took, lateness = asyncio.run(stalls_while(lambda: json_array(walk)))
        lateness.sort()
        p99 = lateness[int(len(lateness) * 0.99)]
        print(
            f"walk + sliced encoding in a thread      {took:6.2f} s; the loop's 1 ms ticks "
            f"late by median {statistics.median(lateness) * 1000:.1f} ms, "
            f"p99 {p99 * 1000:.1f} ms, worst {lateness[-1] * 1000:.1f} ms; "
            f"{len(collections.pauses)} garbage collections meanwhile, the longest "
            f"{max(collections.pauses, default=0) * 1000:.1f} ms"
        )
        took, lateness = asyncio.run(stalls_while(lambda: json.dumps(list(walk))))
        print(
            f"(same walk, one json.dumps at the end:  {took:6.2f} s; worst tick "
            f"{max(lateness) * 1000:.1f} ms late)"
        )
        print(end_to_end(data, args.files))
    print(cpu_lines()[0])


if __name__ == "__main__":
    main()
