"""md5 of several uploads at once: the multi-buffer engine in ``store/_md5lanes.c``.

One md5 stream cannot run faster than a core runs its chain of dependent steps, but
the uploads a worker receives at the same time are independent: the engine hashes up
to 16 of them side by side in the lanes of AVX-512 registers, one thread per process.
It works on OpenSSL's own ``MD5_CTX`` bytes, so its digests save, load and finish
exactly like libcrypto's (store/digest.py).

It is used when the extension was built, the CPU has AVX-512 and the server was not
started with ``--no-md5-lanes`` (``lanes() > 0``); otherwise md5 runs on libcrypto in the
calling thread, as sha256 always does.
"""

from __future__ import annotations

from collections.abc import Sequence

try:
    from . import _md5lanes  # type: ignore[attr-defined]
except ImportError:  # built without a C compiler, or on another platform
    _md5lanes = None

_enabled = True

Buffer = bytes | bytearray | memoryview


def lanes() -> int:
    """Streams the engine hashes side by side here (0: not built, not usable, or off)."""
    if _md5lanes is None or not _enabled:
        return 0
    return int(_md5lanes.lanes())


def set_enabled(enabled: bool) -> None:
    """Switch the engine on or off for this process (and the workers it forks later)."""
    global _enabled
    _enabled = enabled


def describe() -> str:
    """What hashes md5 here, for the startup log."""
    if lanes():
        return f"md5 lanes engine, {lanes()} lanes (AVX-512); libcrypto for one stream"
    if _md5lanes is None:
        return "libcrypto (md5 lanes extension not built)"
    return "libcrypto (md5 lanes off)" if not _enabled else "libcrypto (no AVX-512 here)"


def update(ctx: object, chunks: Sequence[Buffer], *, to_engine: bool = False) -> None:
    """Hash ``chunks`` into the writable 92-byte ``MD5_CTX`` ``ctx``; blocks (GIL released)
    until done. Only one update of one context may run at a time. ``to_engine`` sends it
    to the engine even when too few uploads stream for lanes to pay off (tests)."""
    assert _md5lanes is not None
    _md5lanes.update(ctx, chunks, to_engine)


def use_scalar(address: int) -> None:
    """Give the engine libcrypto's ``MD5_Update`` (its address) for the updates that run
    in their caller's thread (too few uploads streaming for lanes); without it, every
    update goes to the engine."""
    if _md5lanes is not None:
        _md5lanes.set_scalar(address)


def stats() -> dict[str, int]:
    """What this process's engine did: updates taken, lockstep passes and the blocks in
    them (``lane_blocks / pass_blocks`` is the mean number of streams per pass), and
    blocks hashed one stream at a time (``single_blocks``)."""
    return dict(_md5lanes.stats()) if _md5lanes is not None else {}
