"""The machine a benchmark runs on, for the lines printed under its figures: CPU model and
flags (which md5 kernel can run), load (other processes sharing the cores), and the limits
an upload meets on it (``md5sum`` of a page-cached file, a plain disk write)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path


def cpuinfo_field(name: str) -> str:
    """The first ``name`` line of /proc/cpuinfo ("" where there is none)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == name:
                return value.strip()
    return ""


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def cpu_lines() -> list[str]:
    """CPU model and count, all its flags, the load average now, and the Python."""
    return [
        f"CPU: {cpuinfo_field('model name') or 'unknown'}, {os.cpu_count()} CPUs "
        f"(nproc {len(os.sched_getaffinity(0))}), load average {load_average()}.",
        f"CPU flags: {cpuinfo_field('flags') or 'unknown'}.",
        f"Python {sys.version.split()[0]}.",
    ]


def md5sum_twice(path: Path) -> tuple[str, float]:
    """md5sum's digest and its time on the 2nd run (the file is then in the page cache)."""
    runs = []
    for _ in range(2):
        start = time.perf_counter()
        out = subprocess.run(["md5sum", str(path)], check=True, capture_output=True, text=True)
        runs.append(time.perf_counter() - start)
    return out.stdout.split()[0], runs[1]


def dd_write(source: Path, target: Path, *options: str) -> float:
    """Seconds of ``dd conv=fdatasync`` with ``options`` (default ``bs=4M``) copying
    ``source`` to ``target`` (then removed)."""
    start = time.perf_counter()
    subprocess.run(
        ["dd", f"if={source}", f"of={target}", *(options or ["bs=4M"]), "conv=fdatasync"],
        check=True,
        capture_output=True,
    )
    seconds = time.perf_counter() - start
    target.unlink()
    return seconds


@dataclass
class DiskLimits:
    """What one upload of a file can go no faster than: hashing it, writing it."""

    md5: str
    nbytes: int
    md5sum_seconds: float
    dd_seconds: float
    dd_direct_seconds: float  # bs=1M oflag=direct: the disk without the page cache

    @property
    def md5sum_rate(self) -> float:  # MB/s
        return self.nbytes / self.md5sum_seconds / 1e6

    @property
    def dd_rate(self) -> float:  # MB/s
        return self.nbytes / self.dd_seconds / 1e6

    @property
    def dd_direct_rate(self) -> float:  # MB/s
        return self.nbytes / self.dd_direct_seconds / 1e6

    def text(self) -> str:
        return (
            f"md5sum {self.md5sum_rate:.0f} MB/s (page-cached, 2nd run), "
            f"dd bs=4M conv=fdatasync {self.dd_rate:.0f} MB/s, "
            f"dd bs=1M oflag=direct {self.dd_direct_rate:.0f} MB/s (same filesystem)"
        )


def disk_limits(path: Path) -> DiskLimits:
    """md5sum of ``path`` (page-cached, 2nd run) and dd of it to a file beside it, through
    the page cache and straight to the disk."""
    md5, md5sum_seconds = md5sum_twice(path)
    target = path.with_name(f"{path.name}.dd")
    dd_seconds = dd_write(path, target)
    dd_direct_seconds = dd_write(path, target, "bs=1M", "oflag=direct")
    return DiskLimits(md5, path.stat().st_size, md5sum_seconds, dd_seconds, dd_direct_seconds)
