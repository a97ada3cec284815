"""The command-line client's throughput against this machine's own limits, in one run.

Run: .venv/bin/python bench/bench_cli.py [--size-mib 1024] [--rounds 3]
Prints figures; it is not a pass/fail test. It starts a redis-server and the server in a
temp dir, makes a random file, and measures (medians of ``--rounds``):

* the limits: ``md5sum`` of the file (page-cached), one PATCH of the whole file with
  requests and the file object (the server's pace for one stream, nothing else on the
  client), ``curl`` fetching it from /download;
* ``tus-staging upload`` (a process of its own, interpreter start included) with its
  default 64 MiB chunks and as one PATCH, and tuspy's uploader in 64 MiB chunks, for
  comparison, in this process;
* the file cut in 8, ``--parallel 1`` and ``--parallel 4``;
* ``tus-staging get`` of the file (md5 checked while writing; its metadata record is
  made before the rounds, so both download rows time the transfer alone);
* ``tus-staging ls``: what every command costs before its work (process start, imports,
  one request). The MB/s column means nothing on that row.

Each upload is checked against the server's sidecar (md5, size), then removed.
"""

from __future__ import annotations

import argparse
import hashlib
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import requests

from bench.bench_upload import USER, Bench, MiB, running_server, timed, write_random
from bench.machine import cpu_lines, load_average, md5sum_twice
from tests.cli_runs import cli_env, command
from tests.servers import ServerProcess


def md5_of(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "md5").hexdigest()


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class CliBench(Bench):
    def __init__(self, server: ServerProcess, tmp: Path):
        super().__init__(server)
        self.env = cli_env(tmp, TUS_STAGING_URL=server.url, TUS_STAGING_TOKEN=self.token)
        self.tmp = tmp

    def cli(self, *args: str) -> tuple[float, float]:
        """(wall seconds, the client process's CPU seconds) of one command."""
        cpu = children_cpu()
        start = time.perf_counter()
        done = subprocess.run(command(*args), env=self.env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(f"tus-staging {' '.join(args)}: {done.stderr}")
        return seconds, children_cpu() - cpu

    def upload(self, paths: list[Path], md5s: list[str], *flags: str) -> tuple[float, float]:
        folder = self.new_name("cli").removesuffix(".bin")
        seconds, cpu = self.cli("upload", *map(str, paths), "--dest", folder, *flags)
        for path, md5 in zip(paths, md5s, strict=True):
            self.check_and_remove(f"{folder}/{path.name}", path.stat().st_size, md5)
        return seconds, cpu

    def get(self, remote: str, md5: str) -> tuple[float, float]:
        target = self.tmp / "fetched.bin"
        seconds, cpu = self.cli("get", remote, str(target))
        if md5_of(target) != md5:
            raise SystemExit("get: md5 differs")
        target.unlink()
        return seconds, cpu

    def curl(self, remote: str) -> float:
        target = self.tmp / "curled.bin"
        command = [
            "curl", "-sSf", "-o", str(target), "-H", f"Authorization: Bearer {self.token}",
            f"{self.server.url}/download/{remote}",
        ]  # fmt: skip
        seconds = timed(lambda: subprocess.run(command, check=True))
        target.unlink()
        return seconds


def split(path: Path, parts: int) -> tuple[list[Path], list[str]]:
    """The file cut into ``parts`` files (and their md5s), in a folder beside it."""
    folder = path.parent / "parts"
    folder.mkdir(exist_ok=True)
    size = path.stat().st_size // parts
    paths, md5s = [], []
    with open(path, "rb") as source:
        for index in range(parts):
            part = folder / f"part{index}.bin"
            data = source.read(size)
            part.write_bytes(data)
            paths.append(part)
            md5s.append(hashlib.md5(data).hexdigest())
    return paths, md5s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="size of the file")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; medians are printed")
    args = parser.parse_args()
    size = args.size_mib * MiB
    for line in cpu_lines():
        print(line)
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp_name:
        tmp = Path(tmp_name)
        with running_server(tmp) as (_, server):
            bench = CliBench(server, tmp)
            path = tmp / "random.bin"
            md5 = write_random(path, size)
            parts, part_md5s = split(path, 8)
            staged = server.data_dir / "staging" / USER / "kept" / "random.bin"
            staged.parent.mkdir(parents=True)
            shutil.copyfile(path, staged)
            # Its metadata record now, so that the get rows time the transfer alone.
            headers = {"Authorization": f"Bearer {bench.token}"}
            requests.get(f"{server.url}/metadata/kept/random.bin", headers=headers, timeout=600)
            workloads: list[tuple[str, Callable[[], float | tuple[float, float]]]] = [
                ("md5sum (page-cached)", lambda: md5sum_twice(path)[1]),
                ("tus-staging ls (process start + one request)", lambda: bench.cli("ls")),
                ("one PATCH: requests + file object",
                 lambda: bench.requests_file_object(path, md5)),
                ("tuspy, 64 MiB chunks", lambda: bench.tuspy(path, md5, 64 * MiB)),
                ("tus-staging upload (64 MiB chunks)", lambda: bench.upload([path], [md5])),
                ("tus-staging upload --chunk-size 2G (one PATCH)",
                 lambda: bench.upload([path], [md5], "--chunk-size", "2G")),
                ("tus-staging upload, 8 files, --parallel 1",
                 lambda: bench.upload(parts, part_md5s, "--parallel", "1")),
                ("tus-staging upload, 8 files, --parallel 4",
                 lambda: bench.upload(parts, part_md5s, "--parallel", "4")),
                ("curl /download", lambda: bench.curl("kept/random.bin")),
                ("tus-staging get", lambda: bench.get("kept/random.bin", md5)),
            ]  # fmt: skip
            results: dict[str, list[tuple[float, float | None]]] = {}
            for _ in range(args.rounds):  # interleaved: drifts of the machine hit every row
                for label, run in workloads:
                    outcome = run()
                    wall, cpu = outcome if isinstance(outcome, tuple) else (outcome, None)
                    results.setdefault(label, []).append((wall, cpu))
    print(f"\n{args.size_mib} MiB, medians of {args.rounds} rounds; load average {load_average()}")
    print("| workload | s | MB/s | client CPU s |")
    print("|---|---:|---:|---:|")
    for label, runs in results.items():
        wall = statistics.median(w for w, _ in runs)
        cpus = [c for _, c in runs if c is not None]
        cpu = f"{statistics.median(cpus):.2f}" if cpus else ""
        print(f"| {label} | {wall:.2f} | {size / wall / 1e6:.0f} | {cpu} |")


if __name__ == "__main__":
    main()
