"""Throughput of the resumable digest and the content scanner against md5sum and hashlib.

Run: .venv/bin/python bench/bench_digest.py [--mib 256]
Prints figures; it is not a pass/fail test.  Python-side rows hash data already in memory
(the file's bytes, read once) so they measure the hashing, not the disk.
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from store import digest as dg
from store.digest import ResumableDigest, digests_available
from store.scanner import ContentScanner

MiB = 1 << 20


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def blocks(data: bytes, size: int) -> list[memoryview]:
    view = memoryview(data)
    return [view[i : i + size] for i in range(0, len(data), size)]


def md5_resumable(data: bytes, block: int) -> None:
    d = ResumableDigest.new("md5")
    for b in blocks(data, block):
        d.update(b)
    d.hexdigest()


def md5_resumable_saving_state(data: bytes, block: int) -> None:
    # What a PATCH does at every commit: save, and the next request loads.
    d = ResumableDigest.new("md5")
    for b in blocks(data, block):
        d.update(b)
        d = ResumableDigest.from_state("md5", d.state())
    d.hexdigest()


def md5_hashlib(data: bytes, block: int) -> None:
    h = hashlib.md5()
    for b in blocks(data, block):
        h.update(b)
    h.hexdigest()


def scan(data: bytes, block: int) -> None:
    s = ContentScanner()
    for b in blocks(data, block):
        s.update(b)
    s.finish()


def md5_and_scan(data: bytes, block: int) -> None:
    d = ResumableDigest.new("md5")
    s = ContentScanner()
    for b in blocks(data, block):
        d.update(b)
        s.update(b)
    d.hexdigest()
    s.finish()


def longest_stall(call: Callable[[], object]) -> tuple[float, float]:
    """Run ``call`` in a thread; (longest pause of a 1 ms ticker in this thread, call time)."""
    worker = threading.Thread(target=call)
    longest = 0.0
    start = last = time.perf_counter()
    worker.start()
    while worker.is_alive():
        time.sleep(0.001)
        now = time.perf_counter()
        longest, last = max(longest, now - last), now
    worker.join()
    return longest, time.perf_counter() - start


def gil_figures(data: bytes) -> None:
    # ResumableDigest (ctypes.CDLL: GIL released) against the same MD5_Update called
    # through ctypes.PyDLL, which keeps the GIL: the ticker stands for the event loop.
    def report(label: str, stall: float, took: float) -> None:
        print(f"{label:<52} {stall * 1e3:8.1f} ms stall (call {took:.2f} s)")

    d = ResumableDigest.new("md5")
    report("event loop beside one md5 update() of the file", *longest_stall(lambda: d.update(data)))
    if dg._LIBCRYPTO:
        lib = ctypes.PyDLL(dg._LIBCRYPTO)
        lib.MD5_Update.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
        ctx = ctypes.create_string_buffer(92)
        lib.MD5_Init(ctx)
        held = longest_stall(lambda: lib.MD5_Update(ctx, data, len(data)))
        report("  same call with the GIL held (ctypes.PyDLL)", *held)


def ascii_text(size: int) -> bytes:
    line = b"The quick brown fox jumps over the lazy dog; 0123456789 ,.;:!?\n"
    return (line * (size // len(line) + 1))[:size]


def utf8_text(size: int) -> bytes:
    line = "Größe ÷ été — 日本語のテキスト — emoji 😀 and plain ascii words\n".encode()
    return (line * (size // len(line) + 1))[:size]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mib", type=int, default=256, help="size of the test file in MiB")
    args = parser.parse_args()
    size = args.mib * MiB
    rows: list[tuple[str, float, int]] = []

    def row(label: str, seconds: float, nbytes: int = size) -> None:
        rows.append((label, seconds, nbytes))
        print(f"{label:<52} {seconds:8.3f} s {nbytes / seconds / 1e6:9.0f} MB/s", flush=True)

    print(f"python {sys.version.split()[0]}, resumable digests: {digests_available()}")
    print(f"{'':<52} {'wall':>10} {'throughput':>14}")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "random.bin")
        with open(path, "wb") as f:
            for _ in range(args.mib):
                f.write(os.urandom(MiB))
        with open(path, "rb") as f:
            data = f.read()

        md5sum = shutil.which("md5sum")
        if md5sum:
            runs = []
            for _ in range(2):  # the second run reads from the page cache
                start = time.perf_counter()
                out = subprocess.run([md5sum, path], check=True, capture_output=True, text=True)
                runs.append(time.perf_counter() - start)
            assert out.stdout.split()[0] == hashlib.md5(data).hexdigest()
            row("md5sum (page-cached, 2nd run)", runs[1])

        row("hashlib.md5, 1 MiB blocks", timed(lambda: md5_hashlib(data, MiB)))
        row("ResumableDigest md5, 1 MiB blocks", timed(lambda: md5_resumable(data, MiB)))
        row("ResumableDigest md5, 4 MiB blocks", timed(lambda: md5_resumable(data, 4 * MiB)))
        row(
            "ResumableDigest md5, 1 MiB, state save+load/block",
            timed(lambda: md5_resumable_saving_state(data, MiB)),
        )
        row("ContentScanner, random (binary: newlines only)", timed(lambda: scan(data, MiB)))
        text = ascii_text(size)
        row("ContentScanner, ASCII text, 1 MiB blocks", timed(lambda: scan(text, MiB)))
        utext = utf8_text(size)
        row("ContentScanner, UTF-8 text (decode path)", timed(lambda: scan(utext, MiB)))
        row("md5 + scanner, random, 1 MiB blocks", timed(lambda: md5_and_scan(data, MiB)))
        row("md5 + scanner, ASCII text, 1 MiB blocks", timed(lambda: md5_and_scan(text, MiB)))
        gil_figures(data)


if __name__ == "__main__":
    main()
