"""The machine a benchmark runs on, for the lines printed under its figures: CPU model and
flags (which md5 kernel can run), load (other processes sharing the cores)."""

from __future__ import annotations

import contextlib
import os
import sys
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
