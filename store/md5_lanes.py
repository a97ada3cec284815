"""md5 of several uploads at once: the multi-buffer engine in ``store/_md5lanes.c``.

One md5 stream cannot run faster than a core runs its chain of dependent steps, but
the uploads a worker receives at the same time are independent: the engine hashes them
side by side in the lanes of vector registers (16 with AVX-512, 8 with AVX2), one thread
per process. It works on OpenSSL's own ``MD5_CTX`` bytes, so its digests save, load and
finish exactly like libcrypto's (store/digest.py).

It is used when the extension was built, the CPU has AVX-512 or AVX2 and the server was
not started with ``--no-md5-lanes`` (``lanes() > 0``); otherwise md5 runs on libcrypto in
the calling thread, as sha256 always does. The kernel is the best this CPU runs, or the
one the server's ``--md5-kernel`` names (``avx512``, ``avx2``, ``portable``: one stream at a
time in plain C, no lanes; ``NAME:N`` also routes updates to the engine from N streams):
for benchmarks and tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

try:
    from . import _md5lanes  # type: ignore[attr-defined]
except ImportError:  # built without a C compiler, or on another platform
    _md5lanes = None

KERNEL_ENV = "TUS_STAGING_MD5_KERNEL"  # --md5-kernel's variable, for benchmarks' servers

_enabled = True

Buffer = bytes | bytearray | memoryview


class Kernel(NamedTuple):
    """What the engine hashes on."""

    name: str  # avx512, avx2, portable
    lanes: int  # streams side by side in a pass (0: one at a time)
    min_streams: int  # recent streams from which updates go to the engine (0: never)


def lanes() -> int:
    """Streams the engine hashes side by side here (0: not built, no vector kernel, or
    off: then md5 runs on libcrypto)."""
    if _md5lanes is None or not _enabled:
        return 0
    return int(_md5lanes.lanes())


def set_enabled(enabled: bool) -> None:
    """Switch the engine on or off for this process (and the workers it forks later)."""
    global _enabled
    _enabled = enabled


def built() -> bool:
    """Whether the C extension was built and imported here."""
    return _md5lanes is not None


def kernels() -> list[str]:
    """The kernels this CPU runs, best first (empty: extension not built)."""
    return list(_md5lanes.kernels()) if _md5lanes is not None else []


def kernel() -> Kernel | None:
    """The kernel in use (None: extension not built)."""
    return Kernel(*_md5lanes.kernel()) if _md5lanes is not None else None


def use_kernel(name: str | None = None, *, min_streams: int = 0) -> None:
    """Hash on kernel ``name`` (None: the best this CPU runs), for this process and the
    workers it forks later. ``min_streams``: recent streams from which updates go to the
    engine (0: where the kernel pays; 1: always, to exercise a kernel on one stream).
    ValueError when this CPU does not run ``name``."""
    if _md5lanes is None:
        raise ValueError("the md5 lanes extension is not built here")
    _md5lanes.set_kernel(name, min_streams)


def describe() -> str:
    """What hashes md5 here, for the startup log."""
    if lanes():
        current = kernel()
        assert current is not None
        return (
            f"md5 lanes engine, {current.lanes} lanes ({current.name}) from "
            f"{current.min_streams} streams; libcrypto below"
        )
    if _md5lanes is None:
        return "libcrypto (md5 lanes extension not built)"
    if not _enabled:
        return "libcrypto (md5 lanes off)"
    if kernels() == ["portable"]:
        return "libcrypto (no AVX-512 or AVX2 here)"
    return "libcrypto (md5 lanes on the portable kernel: one stream at a time)"


def update(ctx: object, chunks: Sequence[Buffer], *, to_engine: bool = False) -> None:
    """Hash ``chunks`` into the writable 92-byte ``MD5_CTX`` ``ctx``; blocks (GIL released)
    until done. In the engine, an update may first wait for other streams' updates: at
    most half the time since this context's previous update, and 10 ms. Only one update
    of one context may run at a time. ``to_engine`` sends it to the engine even when too
    few uploads stream for lanes to pay off (tests)."""
    assert _md5lanes is not None
    _md5lanes.update(ctx, chunks, to_engine)


def use_scalar(address: int) -> None:
    """Give the engine libcrypto's ``MD5_Update`` (its address) for the updates that run
    in their caller's thread (too few uploads streaming for lanes); without it, every
    update goes to the engine."""
    if _md5lanes is not None:
        _md5lanes.set_scalar(address)


def stats() -> dict[str, int]:
    """What this process's engine did: updates taken, lockstep passes (``wide_passes``:
    those of more than 8 lanes) and the blocks in them (``lane_blocks / pass_blocks`` is
    the mean number of streams per pass), and blocks hashed one stream at a time
    (``single_blocks``), and the engine's waits for other streams' updates before a pass
    (``holds``, ``held_ns``)."""
    return dict(_md5lanes.stats()) if _md5lanes is not None else {}


def use_kernel_setting(setting: str) -> None:
    """Apply ``NAME`` or ``NAME:MIN_STREAMS`` (the form of ``--md5-kernel``)."""
    name, _, streams = setting.partition(":")
    try:
        use_kernel(name, min_streams=int(streams) if streams else 0)
    except ValueError as error:  # asked for: fail at start rather than hash on another
        raise ValueError(f"md5 kernel {setting!r}: {error}") from None
