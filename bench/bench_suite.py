"""The benchmark suite: every figure next to this machine's own limit, measured in the same run.

Run: .venv/bin/python bench/bench_suite.py [--quick] [--runs N] [--profile]
Prints ONE markdown table (and, with --profile, py-spy figures); it is not a pass/fail test.

It starts, in one temp dir on one filesystem: a redis-server per tus-staging server, the
server with ``--workers 1`` and with ``--workers 2`` (real subprocesses, tokens file), and the
Node reference server (``@tus/server`` + ``@tus/file-store`` from bench/node_reference/,
installed with ``npm ci`` on first use from its package.json + lock). Then, interleaved over
``--runs`` rounds (default 3; medians reported, every run in the notes):

* limits: ``md5sum`` of a 1 GiB random file (page-cached, 2nd run), ``dd bs=4M
  conv=fdatasync`` of it on the same filesystem, and ``dd bs=1M oflag=direct`` (the disk
  without the page cache, as the server writes where the filesystem allows);
* that file as ONE PATCH (http.client, 1 MiB sends) and by tuspy in 64 MiB chunks, against
  tus-staging and (one PATCH) the Node server; a 1 GiB FASTQ-like text file as one PATCH
  (random bytes are binary, and the scanner stops at the first block: text is the case
  where line counting and UTF-8 checking run on every byte);
* 8 concurrent uploads of 128 MiB (8 different files, one client process and one PATCH
  each) against ``--workers 1``, ``--workers 2`` and Node, aggregate MB/s, while a thread
  HEADs a small unfinished upload every 20 ms (p50/p99 over all rounds) and another GETs a
  key in the server's Redis every 20 ms (Redis's own latency, the floor under a HEAD; a
  read, so that the probe adds no AOF fsync of its own: a SET every 20 ms did, and
  doubled the HEAD p99 it was there to explain);
* metadata on demand of a 1 GiB file put into ``staging/alice/`` by hand;
* once (skipped by ``--quick``): a 5 GiB generated stream in one PATCH: server peak RSS and
  finalize time (last byte → 204).

Server CPU is utime+stime from /proc of the server's process tree (gunicorn: master and
workers); peak RSS is VmHWM, reset before each workload (``/proc/PID/clear_refs``). Before
each workload the page cache's dirty pages are flushed (``sync``), so that no workload pays
for the previous one's writeback. The Node server neither hashes nor fsyncs.

``--quick``: 256 MiB and 8×32 MiB, one round, no 5 GiB (about 30 s).

``--profile`` adds py-spy figures after the table (busy share per process and thread kind,
self and inclusive shares of the top frames, and from a 2nd identical run with ``--gil`` the
share of wall time the GIL was held) of one PATCH on ``--workers 1`` and of the concurrent
round on ``--workers 1`` and ``--workers 2``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import multiprocessing
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import requests

from bench.bench_upload import Bench, write_random
from bench.machine import DiskLimits, cpu_lines, disk_limits, load_average
from protocol.headers import TUS_VERSION
from store import md5_lanes
from tests.servers import (
    TOKENS,
    RedisProcess,
    ServerProcess,
    free_port,
    metric_values,
    wait_until,
    write_tokens_file,
)
from tests.test_large_upload import GeneratedStream, PatchTiming, patch_stream
from tests.tus_client import TusTestClient

REPO = Path(__file__).resolve().parents[1]
MiB = 1 << 20
GiB = 1 << 30
USER = "alice"
TOKEN = TOKENS[USER]
NODE_DIR = REPO / "bench" / "node_reference"
PROBE_INTERVAL = 0.020
PY_SPY = Path(sys.executable).parent / "py-spy"


# --- processes: CPU time and peak memory of a server's process tree ---------------------------


def children_of(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                found += [int(c) for c in (task / "children").read_text().split()]
    return found


def process_tree(pid: int) -> list[int]:
    pids, pending = [], [pid]
    while pending:
        current = pending.pop()
        pids.append(current)
        pending += children_of(current)
    return pids


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a live process so far; zeros once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0, 0.0
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def vm_hwm(pid: int) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


@dataclass
class Usage:
    """What a server's processes spent on one workload."""

    cpu: float  # seconds: the server's process tree and its own Redis
    cpu_system: float  # the part of ``cpu`` spent in the kernel
    cpu_redis: float  # the part of ``cpu`` spent by its Redis
    cpu_by_pid: dict[int, float]  # the server's processes (not Redis)
    hwm_sum: int  # bytes: sum of VmHWM over the server's tree
    hwm_max: int  # bytes: largest single process
    hwm_reset: bool  # False: VmHWM could not be reset, these are lifetime peaks


class Target:
    """A server under test, as its clients and this bench see it."""

    def __init__(
        self,
        label: str,
        files_url: str,
        pid: int,
        data_dir: Path,
        redis_proc: RedisProcess | None = None,
    ):
        self.label = label
        self.redis_proc = redis_proc
        self.files_url = files_url
        self.pid = pid
        self.data_dir = data_dir
        self._cpu_mark: dict[int, tuple[float, float]] = {}
        self._hwm_reset = False

    def redis_pids(self) -> list[int]:
        process = self.redis_proc.process if self.redis_proc is not None else None
        return process_tree(process.pid) if process is not None else []

    def begin(self) -> None:
        """Mark the start of a workload: CPU baseline, peak RSS reset."""
        pids = process_tree(self.pid)
        self._cpu_mark = {pid: cpu_seconds(pid) for pid in pids + self.redis_pids()}
        self._hwm_reset = True
        for pid in pids:
            try:
                Path(f"/proc/{pid}/clear_refs").write_text("5")
            except OSError:
                self._hwm_reset = False

    def end(self) -> Usage:
        pids, redis_pids = process_tree(self.pid), self.redis_pids()
        user: dict[int, float] = {}
        system: dict[int, float] = {}
        for pid in pids + redis_pids:
            now, mark = cpu_seconds(pid), self._cpu_mark.get(pid, (0.0, 0.0))
            user[pid], system[pid] = now[0] - mark[0], now[1] - mark[1]
        spent = {pid: user[pid] + system[pid] for pid in pids}
        redis = sum(user[pid] + system[pid] for pid in redis_pids)
        hwm = [vm_hwm(pid) for pid in pids]
        return Usage(
            sum(spent.values()) + redis,
            sum(system.values()),
            redis,
            spent,
            sum(hwm),
            max(hwm),
            self._hwm_reset,
        )


# --- workloads ---------------------------------------------------------------------------------


def file_blocks(path: Path, block: int = MiB) -> Iterator[memoryview]:
    """The file in ``block``-sized views of one reused buffer (each valid until the next)."""
    buffer = bytearray(block)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as handle:
        while count := handle.readinto(buffer):
            yield view[:count]


def send_file(url: str, token: str, path: str) -> tuple[int, float, float]:
    """One PATCH of a whole file (in a pool process): status, started, answered."""
    size = os.path.getsize(path)
    # Not timing the drain: 8 senders polling /proc/net/tcp took ~10 % of the machine.
    timing = patch_stream(url, token, 0, size, file_blocks(Path(path)), time_drain=False)
    return timing.status, timing.started, timing.answered


def connections_by_pid(port: int, pids: list[int]) -> dict[int, int]:
    """Established TCP connections on the server's ``port``, counted by the pid owning them."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":
                    inodes.add(fields[9])
    counts: dict[int, int] = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    link = os.readlink(fd)
                    if link.startswith("socket:[") and link[8:-1] in inodes:
                        counts[pid] = counts.get(pid, 0) + 1
    return counts


class LatencyProbe:
    """A thread that makes one call every ~20 ms and records each latency (successes)."""

    def __init__(self, call: Callable[[], bool]):
        self.call = call
        self.latencies: list[float] = []
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            start = time.perf_counter()
            try:
                ok = self.call()
            except Exception:
                ok = False
            took = time.perf_counter() - start
            if ok:
                self.latencies.append(took)
            else:
                self.failures += 1
            self._stop.wait(max(0.0, PROBE_INTERVAL - took))

    def __enter__(self) -> LatencyProbe:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def head_probe(url: str) -> LatencyProbe:
    """HEAD of an upload (the tus server's lightest request) every 20 ms."""
    session = requests.Session()
    headers = {"Tus-Resumable": TUS_VERSION, "Authorization": f"Bearer {TOKEN}"}
    return LatencyProbe(lambda: session.head(url, headers=headers, timeout=30).status_code == 200)


def redis_probe(redis_proc: RedisProcess | None) -> LatencyProbe | contextlib.nullcontext[None]:
    """A GET on the server's own Redis (append-only, fsync always) every 20 ms: the floor
    under a HEAD. Reads wait behind the fsync of other clients' writes, but add none."""
    if redis_proc is None:
        return contextlib.nullcontext()
    client = redis_proc.client()
    client.set("bench-suite:probe", b"1")
    return LatencyProbe(lambda: client.get("bench-suite:probe") == b"1")


def probe_upload(files_url: str) -> str:
    """A small unfinished upload to HEAD: 1 MiB declared, 64 KiB sent."""
    client = TusTestClient(files_url, TOKEN)
    url = client.create_url(MiB, "head-probe.bin")
    response = client.patch(url, 0, os.urandom(64 * 1024))
    if response.status_code != 204:
        raise SystemExit(f"probe PATCH answered {response.status_code}: {response.text}")
    return url


MD5_SERIES = "tus_staging_md5_"


def md5_counters(files_url: str) -> dict[str, float]:
    """The server's md5 lanes counters from /metrics (all workers summed)."""
    parts = urlsplit(files_url)
    values = metric_values(f"{parts.scheme}://{parts.netloc}")
    return {name: value for name, value in values.items() if name.startswith(MD5_SERIES)}


def md5_note(counters: dict[str, float]) -> str:
    """Streams per lockstep pass and the share of md5 updates that went through lanes."""
    lanes = counters.get(f'{MD5_SERIES}updates_total{{path="lanes"}}', 0.0)
    inline = counters.get(f'{MD5_SERIES}updates_total{{path="inline"}}', 0.0)
    passes = counters.get(f"{MD5_SERIES}pass_blocks_total", 0.0)
    if not lanes + inline:
        return ""
    per_pass = counters.get(f"{MD5_SERIES}lane_blocks_total", 0.0) / passes if passes else 0.0
    return (
        f"md5 lanes: {per_pass:.1f} streams per pass, "
        f"{100 * lanes / (lanes + inline):.0f} % of block updates through the engine"
    )


@dataclass
class Concurrent:
    seconds: float
    nbytes: int
    latencies: list[float]
    head_failures: int
    urls: list[str]
    connections: dict[int, int]  # pid → connections it served, sampled once mid-run
    redis_latencies: list[float]  # GETs on the server's Redis during the uploads


def concurrent_uploads(
    target: Target, files: list[Path], head_url: str, pool: Any
) -> tuple[Concurrent, Usage]:
    client = TusTestClient(target.files_url, TOKEN)
    urls = [client.create_url(f.stat().st_size, f.name) for f in files]
    os.sync()
    target.begin()
    port = urlsplit(target.files_url).port or 80
    with head_probe(head_url) as probe, redis_probe(target.redis_proc) as redis_latency:
        pending = pool.starmap_async(
            send_file, [(u, TOKEN, str(f)) for u, f in zip(urls, files, strict=True)]
        )
        time.sleep(0.3)  # every PATCH has its connection by now (and the HEAD probe its own)
        connections = connections_by_pid(port, process_tree(target.pid))
        results = pending.get()
    usage = target.end()
    bad = [status for status, _, _ in results if status != 204]
    if bad:
        raise SystemExit(f"{target.label}: concurrent PATCHes answered {bad}")
    seconds = max(r[2] for r in results) - min(r[1] for r in results)
    nbytes = sum(f.stat().st_size for f in files)
    redis_latencies = redis_latency.latencies if redis_latency is not None else []
    result = Concurrent(
        seconds, nbytes, probe.latencies, probe.failures, urls, connections, redis_latencies
    )
    return result, usage


def node_single(target: Target, path: Path) -> tuple[PatchTiming, Usage, str]:
    url = TusTestClient(target.files_url, TOKEN).create_url(path.stat().st_size, path.name)
    os.sync()
    target.begin()
    timing = patch_stream(url, TOKEN, 0, path.stat().st_size, file_blocks(path))
    usage = target.end()
    if timing.status != 204:
        raise SystemExit(f"node PATCH answered {timing.status}")
    return timing, usage, url


def node_remove(target: Target, urls: list[str], sizes: list[int]) -> None:
    """Check what the Node server stored (sizes only: it keeps no digest) and delete it."""
    for url, size in zip(urls, sizes, strict=True):
        upload_id = url.rstrip("/").rsplit("/", 1)[1]
        stored = target.data_dir / upload_id
        if stored.stat().st_size != size:
            raise SystemExit(f"node stored {stored.stat().st_size} bytes of {size} for {url}")
        stored.unlink()
        (target.data_dir / f"{upload_id}.json").unlink(missing_ok=True)


@dataclass
class Huge:
    """A multi-GiB generated stream in one PATCH."""

    timing: PatchTiming
    usage: Usage
    redis_latencies: list[float]
    failure: str  # empty when the PATCH answered 204 and the sidecar's md5 matched


def huge_upload(bench: Bench, target: Target, total: int) -> Huge:
    name = bench.new_name("generated")
    url = bench.client.create_url(total, name)
    stream = GeneratedStream()
    os.sync()
    target.begin()
    with redis_probe(target.redis_proc) as redis_latency:
        timing = patch_stream(url, TOKEN, 0, total, stream.read(total))
    usage = target.end()
    latencies = redis_latency.latencies if redis_latency is not None else []
    if timing.status == 204:
        bench.check_and_remove(name, total, stream.hexdigest())
        return Huge(timing, usage, latencies, "")
    committed = bench.client.offset(url)
    bench.client.session.delete(url, headers=bench.client.headers(), timeout=60)
    failure = (
        f"FAILED: PATCH answered {timing.status} after {timing.seconds:.1f} s, "
        f"{committed / 1e9:.2f} GB committed"
    )
    return Huge(timing, usage, latencies, failure)


def metadata_on_demand(server: ServerProcess, source: Path, name: str, md5: str) -> float:
    """GET /metadata of a file that did not come through tus (a hard link to ``source``)."""
    staged = server.data_dir / "staging" / USER / name
    staged.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, staged)
    except OSError:
        shutil.copyfile(source, staged)
    start = time.perf_counter()
    response = requests.get(
        f"{server.url}/metadata/{name}", headers={"Authorization": TOKEN}, timeout=3600
    )
    seconds = time.perf_counter() - start
    record = response.json() if response.ok else {}
    if record.get("md5") != md5:
        raise SystemExit(f"metadata answered {response.status_code}: {response.text[:300]}")
    staged.unlink()
    (server.data_dir / "metadata" / USER / name).unlink(missing_ok=True)
    return seconds


# --- servers -----------------------------------------------------------------------------------


def node_version() -> str:
    try:
        return subprocess.run(
            ["node", "--version"], check=True, capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "none"


def ensure_node_reference() -> None:
    if (NODE_DIR / "node_modules" / "@tus" / "server").is_dir():
        return
    print("installing @tus/server and @tus/file-store (npm ci) …", flush=True)
    subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=NODE_DIR, check=True
    )


class NodeServer:
    def __init__(self, directory: Path, log_path: Path):
        self.directory = directory
        self.port = free_port()
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def files_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/files/"

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                ["node", str(NODE_DIR / "server.mjs"), str(self.port), str(self.directory)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        wait_until(self._answers, 30, "node reference server")

    def _answers(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"node server exited: {self.log_path.read_text()[-2000:]}")
        try:
            return requests.options(self.files_url, timeout=1).status_code in (200, 204)
        except requests.ConnectionError:
            return False

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


# --- py-spy ------------------------------------------------------------------------------------


class Profile:
    """``py-spy record --format raw`` of a pid (and its subprocesses) around a block.

    ``gil=True`` samples only the thread holding the GIL: its samples over the possible
    ones are the share of wall time the GIL was held."""

    def __init__(self, pid: int, out: Path, rate: int = 250, gil: bool = False):
        self.pid = pid
        self.out = out
        self.rate = rate
        self.gil = gil
        self.process: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        self.seconds = 0.0

    def __enter__(self) -> Profile:
        command = [
            str(PY_SPY), "record", "--pid", str(self.pid), "--format", "raw", "--threads",
            "--subprocesses", "--rate", str(self.rate), "--output", str(self.out),
            "--duration", "600", "--nonblocking",
        ]  # fmt: skip
        if self.gil:
            command.append("--gil")
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL
        )
        time.sleep(1.5)  # attached and sampling
        self.started = time.perf_counter()
        return self

    def __exit__(self, *_: object) -> None:
        self.seconds = time.perf_counter() - self.started
        assert self.process is not None
        time.sleep(0.2)
        self.process.send_signal(signal.SIGINT)
        _, err = self.process.communicate(timeout=60)
        if not self.out.exists():
            raise SystemExit(f"py-spy wrote nothing: {err.decode(errors='replace')[-1000:]}")


PROJECT_FRAME = re.compile(r"(^|/)(tus_staging|store|protocol)/[^/]+\.py$")


def frame_parts(frame: str) -> tuple[str, str]:
    """'absorb (/work/main/store/partial.py:140)' → ('absorb (partial.py)', the full path)."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    return (f"{name} ({Path(path).name})" if path else name), path


@dataclass
class Samples:
    total: int
    threads: Counter[str]
    self_counts: Counter[str]
    inclusive: Counter[str]


def read_samples(raw: Path) -> Samples:
    self_counts: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        pid, thread, code = "", "", []
        for frame in stack.split(";"):
            if frame.startswith("process "):
                pid = frame.split(":", 1)[0].split()[1]
            elif frame.startswith("thread "):
                name = frame.split(": ", 1)[1] if ": " in frame else frame
                thread = "event loop" if name == "MainThread" else "executor threads"
            else:
                code.append(frame_parts(frame))
        threads[f"pid {pid}, {thread}"] += count
        total += count
        if code:
            self_counts[code[-1][0]] += count
            for name in {n for n, path in code if PROJECT_FRAME.search(path)}:
                inclusive[name] += count
    return Samples(total, threads, self_counts, inclusive)


def report_profile(title: str, profile: Profile, gil: Profile | None, top: int = 12) -> None:
    """Busy share per process and thread kind; self and inclusive shares of the top frames."""
    samples = read_samples(profile.out)
    total = max(samples.total, 1)
    possible = profile.seconds * profile.rate
    print(f"\n### py-spy: {title}")
    print(
        f"{samples.total} non-idle samples at {profile.rate} Hz over {profile.seconds:.1f} s "
        f"= {samples.total / possible:.2f} busy threads on average"
    )
    if gil is not None:
        held = read_samples(gil.out).total / (gil.seconds * gil.rate)
        print(f"GIL held {held:.0%} of wall time (py-spy --gil, separate identical run)")
    print("\n| process, threads | share of samples | busy (of wall) |\n|---|---:|---:|")
    for name, count in sorted(samples.threads.items()):
        print(f"| {name} | {count / total:.0%} | {count / possible:.0%} |")
    print("\n| self (leaf) frame | share |\n|---|---:|")
    for name, count in samples.self_counts.most_common(top):
        print(f"| {name} | {count / total:.1%} |")
    print("\n| inclusive (project frames) | share |\n|---|---:|")
    for name, count in samples.inclusive.most_common(top):
        print(f"| {name} | {count / total:.1%} |")


# --- the table ---------------------------------------------------------------------------------


@dataclass
class Runs:
    """Repeated measurements of one workload: (bytes, seconds, usage) per run."""

    runs: list[tuple[int, float, Usage]] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    redis_latencies: list[float] = field(default_factory=list)
    head_failures: int = 0
    extra: list[str] = field(default_factory=list)
    md5_counters: dict[str, float] = field(default_factory=dict)  # summed over runs

    def add(self, nbytes: int, seconds: float, usage: Usage) -> None:
        self.runs.append((nbytes, seconds, usage))

    def rates(self) -> list[float]:
        return [n / s / 1e6 for n, s, _ in self.runs]

    def rate(self) -> float:
        return statistics.median(self.rates())

    def cpu(self) -> float:
        return statistics.median(u.cpu for _, _, u in self.runs)

    def cpu_system(self) -> float:
        return statistics.median(u.cpu_system for _, _, u in self.runs)

    def cpu_redis(self) -> float:
        return statistics.median(u.cpu_redis for _, _, u in self.runs)

    def cpu_per_gb(self) -> float:
        return statistics.median(u.cpu / (n / 1e9) for n, _, u in self.runs)

    def cpu_text(self, node: Runs | None = None) -> str:
        """CPU per GB (beside the Node server's for the same workload), then the seconds."""
        vs_node = f" (× node {ratio(self.cpu_per_gb(), node.cpu_per_gb())})" if node else ""
        return f"**{self.cpu_per_gb():.2f} s/GB**{vs_node}; " + cpu_text(
            self.cpu(), self.cpu_system(), self.cpu_redis()
        )

    def spread(self) -> str:
        rates = self.rates()
        if len(rates) == 1:
            return "1 run"
        return f"median of {len(rates)}: " + "/".join(f"{r:.0f}" for r in rates)


def cpu_text(total: float, system: float, redis: float) -> str:
    return f"{total:.1f} s, {system:.1f} of it sys" + (f", Redis {redis:.2f}" if redis else "")


def rss_text(usage: Usage) -> str:
    text = f"{usage.hwm_sum / 1e6:.0f} MB"
    if usage.hwm_max != usage.hwm_sum:
        text += f" (sum; max proc {usage.hwm_max / 1e6:.0f})"
    return text + ("" if usage.hwm_reset else " lifetime")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def latency_text(values: list[float]) -> str:
    if not values:
        return "no samples"
    return (
        f"p50 {percentile(values, 0.5) * 1e3:.1f} ms / p99 {percentile(values, 0.99) * 1e3:.1f} ms"
    )


class Table:
    HEADER = (
        "| workload | figure | limit (same run) | × limit | × node | server CPU (processes + "
        "Redis) | server peak RSS | notes |"
    )

    def __init__(self) -> None:
        self.lines: list[str] = []

    def row(self, *cells: str) -> None:
        self.lines.append("| " + " | ".join(cells) + " |")

    def print(self, footer: list[str]) -> None:
        print()
        print(self.HEADER)
        print("|---|---:|---|---:|---:|---:|---:|---|")
        for line in self.lines:
            print(line)
        print()
        for line in footer:
            print(line)


def ratio(value: float, limit: float | None) -> str:
    return "" if not limit else f"{value / limit:.2f}"


# --- main --------------------------------------------------------------------------------------


_BASES = bytes(b"ACGT"[i % 4] for i in range(256))


def fastq_block(seed: int, size: int = MiB) -> bytes:
    """``size`` bytes of FASTQ-like text (whole 4-line records, then newline padding)."""
    records = []
    length = 0
    number = seed * 100_000
    while True:
        sequence = os.urandom(100).translate(_BASES)
        quality = bytes(33 + b % 41 for b in os.urandom(100))
        record = b"@read_%d length=100\n%s\n+\n%s\n" % (number, sequence, quality)
        if length + len(record) > size:
            break
        records.append(record)
        length += len(record)
        number += 1
    return b"".join(records) + b"\n" * (size - length)


def write_text(path: Path, nbytes: int) -> str:
    """A FASTQ-like text file: 16 distinct 1 MiB blocks, repeated (the scanner and md5 do
    the same work on every byte whatever repeats)."""
    blocks = [fastq_block(seed) for seed in range(16)]
    md5 = hashlib.md5()
    with open(path, "wb") as handle:
        for index in range(nbytes // MiB):
            block = blocks[index % len(blocks)]
            md5.update(block)
            handle.write(block)
    return md5.hexdigest()


def machine_lines(started: float, md5: str) -> list[str]:
    mem = "?"
    with contextlib.suppress(OSError, IndexError):
        mem = f"{int(Path('/proc/meminfo').read_text().split()[1]) / 2**20:.0f} GiB"
    try:
        import uvloop

        loop = f"uvloop {uvloop.__version__}"
    except ImportError:
        loop = "asyncio (no uvloop)"
    import aiohttp

    return [
        *cpu_lines(),
        f"Machine: {mem} RAM, {platform.system()} {platform.release()}; md5 in the servers: {md5}.",
        f"aiohttp {aiohttp.__version__}, {loop}; "
        f"Node {node_version()} (@tus/server {node_package_version('server')}, "
        f"@tus/file-store {node_package_version('file-store')}).",
        f"Suite runtime: {time.perf_counter() - started:.0f} s; load average at the start "
        f"{LOAD_AT_START}, at the end {load_average()} (other processes share the machine).",
    ]


def md5_of_server(server: ServerProcess) -> str:
    """What hashes md5 in the server, as its startup log says."""
    for line in server.log_path.read_text(errors="replace").splitlines():
        if "md5: " in line:
            return line.split("md5: ", 1)[1].strip()
    return "not logged"


LOAD_AT_START = load_average()


def node_package_version(name: str) -> str:
    with contextlib.suppress(OSError, ValueError, KeyError):
        manifest = NODE_DIR / "node_modules" / "@tus" / name / "package.json"
        return str(json.loads(manifest.read_text())["version"])
    return "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="256 MiB and 8×32 MiB, 1 round, no 5 GiB"
    )
    parser.add_argument("--runs", type=int, help="rounds of each workload (default 3; quick 1)")
    parser.add_argument("--profile", action="store_true", help="add py-spy profiles")
    parser.add_argument("--no-node", action="store_true", help="skip the Node reference server")
    parser.add_argument("--parts", type=int, default=8, help="concurrent uploads (default 8)")
    parser.add_argument("--part-mib", type=int, help="MiB of each (default 128; quick 32)")
    parser.add_argument(
        "--md5-kernel",
        metavar="NAME[:N]",
        help="the servers' md5 kernel (avx512, avx2, portable; N: routed to the engine from N "
        "streams), as TUS_STAGING_MD5_KERNEL: e.g. avx2 to measure an AVX2-only CPU",
    )
    args = parser.parse_args()
    if args.profile and not PY_SPY.exists():
        raise SystemExit(f"--profile needs py-spy at {PY_SPY}: pip install -e '.[bench]'")
    started = time.perf_counter()
    runs = args.runs or (1 if args.quick else 3)
    single_size = 256 * MiB if args.quick else GiB
    part_size = (args.part_mib or (32 if args.quick else 128)) * MiB
    parts = args.parts
    server_env = {md5_lanes.KERNEL_ENV: args.md5_kernel} if args.md5_kernel else {}
    huge = 0 if args.quick else 5 * GiB
    use_node = not args.no_node and node_version() != "none"
    if use_node:
        ensure_node_reference()
    single_label = f"{single_size // MiB} MiB" if single_size < GiB else f"{single_size // GiB} GiB"
    conc_label = f"{parts}×{part_size // MiB} MiB"

    def say(text: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f} s] {text}", flush=True)

    table = Table()
    with tempfile.TemporaryDirectory(prefix="bench-suite-") as tmp_name:
        tmp = Path(tmp_name)
        tokens = write_tokens_file(tmp / "tokens.txt")
        redis_1, redis_2 = RedisProcess(tmp / "redis-1"), RedisProcess(tmp / "redis-2")
        server_1 = ServerProcess(tmp / "data-1", redis_1.url, tokens, env=server_env)
        server_2 = ServerProcess(
            tmp / "data-2", redis_2.url, tokens, ["--workers", "2"], env=server_env
        )
        node = NodeServer(tmp / "node-data", tmp / "node.log")
        pool = multiprocessing.get_context("fork").Pool(parts)
        keep_logs = False
        try:
            for process in (redis_1, redis_2, server_1, server_2):
                process.start()
            if use_node:
                node.start()
            assert server_1.process and server_2.process
            tus_1 = Target("tus-staging --workers 1", server_1.files_url, server_1.process.pid,
                           server_1.data_dir, redis_1)  # fmt: skip
            tus_2 = Target("tus-staging --workers 2", server_2.files_url, server_2.process.pid,
                           server_2.data_dir, redis_2)  # fmt: skip
            node_target = (
                Target("node", node.files_url, node.process.pid, node.directory)
                if use_node and node.process
                else None
            )
            bench_1, bench_2 = Bench(server_1), Bench(server_2)

            say(f"writing the {single_label} file and {conc_label} files")
            single = tmp / "random.bin"
            write_random(single, single_size)
            text_file = tmp / "reads.fastq"
            text_md5 = write_text(text_file, single_size)
            subprocess.run(["cat", str(text_file)], stdout=subprocess.DEVNULL, check=True)
            files = [tmp / f"part-{i}.bin" for i in range(parts)]
            part_md5 = [write_random(f, part_size) for f in files]
            for f in files:  # page-cache them, like the single file's md5sum does
                subprocess.run(["cat", str(f)], stdout=subprocess.DEVNULL, check=True)
            os.sync()  # the files just written: their writeback is not dd's
            disk = disk_limits(single)
            md5, md5sum_rate, dd_rate = disk.md5, disk.md5sum_rate, disk.dd_rate
            say(disk.text())

            probes = {tus_1.label: probe_upload(tus_1.files_url),
                      tus_2.label: probe_upload(tus_2.files_url)}  # fmt: skip
            if node_target:
                probes[node_target.label] = probe_upload(node_target.files_url)

            idle = Runs()
            with head_probe(probes[tus_1.label]) as probe, redis_probe(redis_1) as redis_idle:
                time.sleep(2)
            idle.latencies = probe.latencies
            idle.redis_latencies = redis_idle.latencies

            one_patch, text_patch, tuspy, meta = Runs(), Runs(), Runs(), Runs()
            node_patch = Runs()
            finalize_1: list[PatchTiming] = []
            conc = {t.label: Runs() for t in (tus_1, tus_2, node_target) if t}
            for round_ in range(1, runs + 1):
                say(f"round {round_}/{runs}: {single_label} one PATCH, tus-staging")
                os.sync()
                tus_1.begin()
                timing = bench_1.http_client_chunks(single, md5)
                one_patch.add(single_size, timing.seconds, tus_1.end())
                finalize_1.append(timing)
                if node_target:
                    say(f"round {round_}/{runs}: {single_label} one PATCH, node")
                    timing, usage, url = node_single(node_target, single)
                    node_patch.add(single_size, timing.seconds, usage)
                    node_remove(node_target, [url], [single_size])
                say(f"round {round_}/{runs}: {single_label} text, one PATCH, tus-staging")
                os.sync()
                tus_1.begin()
                timing = bench_1.http_client_chunks(text_file, text_md5)
                text_patch.add(single_size, timing.seconds, tus_1.end())
                say(f"round {round_}/{runs}: {single_label} tuspy 64 MiB chunks")
                os.sync()
                tus_1.begin()
                seconds = bench_1.tuspy(single, md5, 64 * MiB)
                tuspy.add(single_size, seconds, tus_1.end())
                # The servers take turns going first, so that no one of them always runs
                # right after the 1 GiB uploads.
                servers = [(tus_1, bench_1), (tus_2, bench_2), (node_target, None)]
                shift = (round_ - 1) % len(servers)
                for target, bench in servers[shift:] + servers[:shift]:
                    if target is None:
                        continue
                    say(f"round {round_}/{runs}: {conc_label} concurrent, {target.label}")
                    before = md5_counters(target.files_url) if bench else {}
                    result, usage = concurrent_uploads(target, files, probes[target.label], pool)
                    runs_of = conc[target.label]
                    if bench is not None:
                        for name, value in md5_counters(target.files_url).items():
                            runs_of.md5_counters[name] = (
                                runs_of.md5_counters.get(name, 0.0) + value - before.get(name, 0)
                            )
                    runs_of.add(result.nbytes, result.seconds, usage)
                    runs_of.latencies += result.latencies
                    runs_of.redis_latencies += result.redis_latencies
                    runs_of.head_failures += result.head_failures
                    if bench is None:
                        node_remove(target, result.urls, [part_size] * parts)
                    else:
                        for f, digest in zip(files, part_md5, strict=True):
                            bench.check_and_remove(f.name, part_size, digest)
                    if target is tus_2:
                        pids = sorted(usage.cpu_by_pid, key=lambda p: -usage.cpu_by_pid[p])
                        runs_of.extra.append(
                            "/".join(
                                f"{usage.cpu_by_pid[p]:.1f} s·{result.connections.get(p, 0)}"
                                for p in pids
                            )
                        )
                say(f"round {round_}/{runs}: metadata on demand, {single_label}")
                os.sync()
                tus_1.begin()
                seconds = metadata_on_demand(server_1, single, f"ondemand-{round_}.bin", md5)
                meta.add(single_size, seconds, tus_1.end())

            huge_result: Huge | None = None
            if huge:
                say(f"{huge // GiB} GiB generated stream, one PATCH, tus-staging --workers 1")
                huge_result = huge_upload(bench_1, tus_1, huge)
                if huge_result.failure:
                    say(f"{huge_result.failure}; server log: {server_1.log_path}")
                    keep_logs = True

            node_single_runs = node_patch if node_patch.runs else None
            node_conc = conc[node_target.label] if node_target else None

            # The table.
            table.row(
                f"limit: `md5sum` of the {single_label} file (page-cached, 2nd run)",
                f"{md5sum_rate:.0f} MB/s", "—", "", "", "", "", "one core; hashing is sequential",
            )  # fmt: skip
            table.row(
                "limit: `dd bs=4M conv=fdatasync` of it, same filesystem",
                f"{dd_rate:.0f} MB/s", "—", "", "", "", "", "page-cached source → disk",
            )  # fmt: skip
            table.row(
                "limit: `dd bs=1M oflag=direct conv=fdatasync` of it, same filesystem",
                f"{disk.dd_direct_rate:.0f} MB/s", "—", "", "", "", "",
                "the disk without the page cache (how the server writes where it can)",
            )  # fmt: skip
            # One upload can go no faster than the slower of its md5 and the disk.
            limit = min(md5sum_rate, dd_rate)
            limits = f"min(md5sum, dd) {limit:.0f} MB/s"

            def throughput_row(label: str, r: Runs, node: Runs | None, notes: str) -> None:
                table.row(
                    label,
                    f"**{r.rate():.0f} MB/s**",
                    limits,
                    ratio(r.rate(), limit),
                    ratio(r.rate(), node.rate()) if node else "",
                    r.cpu_text(node),
                    max_rss(r),
                    f"{r.spread()}; {notes}".rstrip("; "),
                )

            fin = [t.after_drained for t in finalize_1 if t.after_drained is not None]
            throughput_row(
                f"{single_label}, one PATCH (http.client 1 MiB sends), tus-staging -w 1",
                one_patch, node_single_runs,
                f"md5 + line count + text detection; finalize (body read → 204) "
                f"{median_ms(fin)}",
            )  # fmt: skip
            throughput_row(
                f"{single_label} FASTQ-like text, one PATCH, tus-staging -w 1", text_patch,
                node_single_runs,
                "the scanner works on every byte (binary files stop it at once)",
            )  # fmt: skip
            throughput_row(
                f"{single_label}, tuspy 64 MiB chunks, tus-staging -w 1", tuspy, node_single_runs,
                f"{single_size // (64 * MiB)} PATCHes + POST + HEAD",
            )  # fmt: skip
            if node_patch.runs:
                throughput_row(
                    f"{single_label}, one PATCH, Node @tus/server + file-store", node_patch, None,
                    "no hashing, no fsync",
                )  # fmt: skip
            for target in (tus_1, tus_2, node_target):
                if target is None:
                    continue
                r = conc[target.label]
                notes = ""
                if target is tus_2:
                    notes = (
                        f"× workers 1: {r.rate() / conc[tus_1.label].rate():.2f}; per process "
                        f"(workers, then master) CPU s·connections held ({parts} PATCHes, the HEAD "
                        f"probe, idle keep-alives): {', '.join(r.extra)}"
                    )
                if target is node_target:
                    notes = "no hashing, no fsync"
                notes = "; ".join(n for n in (notes, md5_note(r.md5_counters)) if n)
                throughput_row(
                    f"{conc_label} concurrent ({parts} client processes, one PATCH each), "
                    f"{target.label}",
                    r, None if target is node_target else node_conc, notes,
                )  # fmt: skip
            idle_text = (
                f"idle (-w 1): {latency_text(idle.latencies)}; its Redis GET idle: "
                f"{latency_text(idle.redis_latencies)}; target p99 < 50 ms"
            )
            for target in (tus_1, tus_2, node_target):
                if target is None:
                    continue
                r = conc[target.label]
                failed = f", {r.head_failures} failed" if r.head_failures else ""
                table.row(
                    f"HEAD latency during the {conc_label} uploads, {target.label}",
                    f"**{latency_text(r.latencies)}**", idle_text, "", "", "", "",
                    f"{len(r.latencies)} samples{failed}, one HEAD every 20 ms (max "
                    f"{max(r.latencies, default=0) * 1e3:.0f} ms)" + redis_note(r),
                )  # fmt: skip
            table.row(
                f"finalize {single_label} (last body byte read by the server → 204)",
                f"**{median_ms(fin)}**", "target: well under 1 s", "", "", "", "",
                "last byte sent → 204: "
                + median_ms([t.after_last_byte for t in finalize_1])
                + "; per run: " + "/".join(ms_text(f) for f in fin),
            )  # fmt: skip
            if huge_result is not None:
                huge_timing, huge_usage = huge_result.timing, huge_result.usage
                rate = huge / huge_timing.seconds / 1e6
                table.row(
                    f"finalize {huge // GiB} GiB (last body byte read by the server → 204)",
                    huge_result.failure or f"**{ms_text(huge_timing.after_drained)}**",
                    "target: well under 1 s", "", "", "", "",
                    f"last byte sent → 204: {ms_text(huge_timing.after_last_byte)}",
                )  # fmt: skip
                table.row(
                    f"server peak RSS, {huge // GiB} GiB generated stream in one PATCH",
                    f"**{huge_usage.hwm_sum / 1e6:.0f} MB**", "target: < 200 MB", "", "",
                    f"{huge_usage.cpu / (huge / 1e9):.2f} s/GB; "
                    + cpu_text(huge_usage.cpu, huge_usage.cpu_system, huge_usage.cpu_redis),
                    rss_text(huge_usage),
                    (huge_result.failure or f"{rate:.0f} MB/s ({ratio(rate, md5sum_rate)} × "
                     "md5sum), md5 checked; client generates + hashes too")
                    + f"; meanwhile a GET on its Redis: {latency_text(huge_result.redis_latencies)}"
                    f" (max {max(huge_result.redis_latencies, default=0) * 1e3:.0f} ms)",
                )  # fmt: skip
            else:
                table.row(
                    "server peak RSS / finalize, 5 GiB", "skipped (--quick)", "", "", "", "", "",
                    "",
                )  # fmt: skip
            throughput_row(
                f"metadata on demand, {single_label} file put in staging/alice/ by hand",
                meta, None, "GET /metadata/<name>: md5 + lines + text, one pass",
            )  # fmt: skip
            footer = headlines(
                single_label, one_patch, node_single_runs, disk, conc_label,
                [(t.label, conc[t.label]) for t in (tus_1, tus_2)], node_conc,
            )  # fmt: skip
            footer += machine_lines(started, md5_of_server(server_1))
            footer.insert(
                -1,
                "Ratios: × limit = figure / min(md5sum, dd fdatasync), the limit of one upload; "
                "× node = figure / the Node server's figure for the same workload in the same "
                "run. CPU: utime+stime of the server's process tree and of its Redis (median per "
                "run); per GB uploaded. Peak RSS: VmHWM of the server's processes, reset before "
                "each workload (largest run). The clients run on the same machine, sharing its "
                "cores.",
            )

            table.print(footer)
            if args.profile:
                profile_workloads(
                    tmp, [(tus_1, bench_1), (tus_2, bench_2)], single, md5, files, part_md5,
                    probes, pool,
                )  # fmt: skip
        except BaseException:
            keep_logs = True
            raise
        finally:
            if keep_logs:
                logs = Path(tempfile.mkdtemp(prefix="bench-suite-logs-"))
                for log in tmp.glob("*.log"):
                    shutil.copy(log, logs)
                print(f"server logs kept in {logs}", flush=True)
            pool.terminate()
            pool.join()
            node.stop()
            for process in (server_1, server_2, redis_1, redis_2):
                with contextlib.suppress(Exception):
                    process.stop()
    say("done")


def headlines(
    single_label: str,
    single: Runs,
    node_single: Runs | None,
    disk: DiskLimits,
    conc_label: str,
    concurrent: list[tuple[str, Runs]],
    node_conc: Runs | None,
) -> list[str]:
    """The figures the targets are about, each as a ratio to its limit or to Node's."""
    limit = min(disk.md5sum_rate, disk.dd_rate)
    direct_limit = min(disk.md5sum_rate, disk.dd_direct_rate)
    lines = [
        f"Headline: {single_label} in one PATCH {single.rate():.0f} MB/s = "
        f"{single.rate() / limit:.2f} × min(md5sum {disk.md5sum_rate:.0f}, dd fdatasync "
        f"{disk.dd_rate:.0f} MB/s) (target ≥ 0.75), {single.rate() / direct_limit:.2f} × "
        f"min(md5sum, dd oflag=direct) {direct_limit:.0f} MB/s"
        + (
            f", {single.rate() / node_single.rate():.2f} × Node's {node_single.rate():.0f} MB/s "
            f"(target ≥ 0.75); server CPU {single.cpu_per_gb():.2f} s/GB, Node's "
            f"{node_single.cpu_per_gb():.2f}."
            if node_single
            else "."
        )
    ]
    for label, r in concurrent:
        if node_conc is None:
            break
        lines.append(
            f"Headline: {conc_label} concurrent, {label}: server CPU {r.cpu_per_gb():.2f} s/GB = "
            f"{r.cpu_per_gb() / node_conc.cpu_per_gb():.2f} × Node's {node_conc.cpu_per_gb():.2f} "
            f"(target ≤ 1.0); aggregate {r.rate():.0f} MB/s = {r.rate() / node_conc.rate():.2f} × "
            f"Node's {node_conc.rate():.0f} (target ≥ 1.0)."
        )
    return [*lines, ""]


def redis_note(r: Runs) -> str:
    if not r.redis_latencies:
        return ""
    return (
        f"; meanwhile a GET on the server's Redis (appendfsync always): "
        f"{latency_text(r.redis_latencies)} (max {max(r.redis_latencies) * 1e3:.0f} ms)"
    )


def max_rss(r: Runs) -> str:
    return rss_text(max((u for _, _, u in r.runs), key=lambda u: u.hwm_sum))


def ms_text(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1e3:.0f} ms"


def median_ms(values: list[float]) -> str:
    return ms_text(statistics.median(values)) if values else "n/a"


def profile_workloads(
    tmp: Path,
    benches: list[tuple[Target, Bench]],
    single: Path,
    md5: str,
    files: list[Path],
    part_md5: list[str],
    probes: dict[str, str],
    pool: Any,
) -> None:
    """py-spy of one PATCH (workers 1) and of 8 concurrent PATCHes (workers 1 and 2)."""
    rate = 250
    tus_1, bench_1 = benches[0]
    runs: list[Profile] = []
    for gil in (False, True):
        os.sync()
        with Profile(tus_1.pid, tmp / f"single-{gil}.txt", rate, gil) as profile:
            timing = bench_1.http_client_chunks(single, md5)
        runs.append(profile)
        print(f"(profiled one PATCH, gil={gil}: {single.stat().st_size / timing.seconds / 1e6:.0f}"
              " MB/s)")  # fmt: skip
    report_profile("one PATCH, --workers 1", runs[0], runs[1])
    for target, bench in benches:
        runs = []
        for gil in (False, True):
            os.sync()
            with Profile(target.pid, tmp / f"conc-{gil}.txt", rate, gil) as profile:
                result, _ = concurrent_uploads(target, files, probes[target.label], pool)
            for f, digest in zip(files, part_md5, strict=True):
                bench.check_and_remove(f.name, f.stat().st_size, digest)
            runs.append(profile)
            print(f"(profiled concurrent, {target.label}, gil={gil}: "
                  f"{result.nbytes / result.seconds / 1e6:.0f} MB/s)")  # fmt: skip
        # With 2 workers the GIL figure is the sum over two processes (two GILs).
        report_profile(f"8 concurrent PATCHes, {target.label}", runs[0], runs[1])


if __name__ == "__main__":
    main()
