"""Resumable md5 / sha256 digests whose state can be saved to Redis between PATCH requests.

``hashlib`` objects cannot be serialized, so a digest that must survive from one request
(or worker, or host) to the next uses OpenSSL's own low-level contexts: ``MD5_CTX`` is a
plain 92-byte struct and ``SHA256_CTX`` a 112-byte one.  We call ``MD5_Init/Update/Final``
and ``SHA256_Init/Update/Final`` from libcrypto (the library ``_hashlib`` links) through
ctypes; the raw struct bytes, prefixed with a tag describing their layout, are the state.

Threads: ctypes releases the GIL for the duration of every foreign call, so
``ResumableDigest.update`` on a large block can run in a worker thread (e.g.
``asyncio.to_thread``) while the event loop keeps serving other requests.  One digest
object must not be updated from two threads at once, and the buffer passed to
``update`` must not be modified until the call returns.

If libcrypto cannot be loaded (or fails the self-test at import), ``digests_available()``
is False and ``ResumableDigest.new`` returns a hashlib-backed digest whose ``state()`` is
None: the store then recomputes from the partial file (slow, correct).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import platform
import struct
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from . import md5_lanes

__all__ = [
    "ALGORITHMS",
    "Digest",
    "DigestStateError",
    "DigestUnavailableError",
    "HashlibDigest",
    "ResumableDigest",
    "digest_backend",
    "digests_available",
]

Buffer = bytes | bytearray | memoryview

# Bump when the meaning of a stored state changes; old states are then refused (and the
# store recomputes from the partial file) instead of being misread.
STATE_VERSION = 1


class DigestStateError(ValueError):
    """A saved digest state cannot be loaded here (other platform/algorithm, or garbage)."""


class DigestUnavailableError(RuntimeError):
    """A resumable (libcrypto) digest was required but libcrypto is not usable."""


@dataclass(frozen=True)
class _Algorithm:
    name: str
    ctx_size: int  # sizeof(MD5_CTX) / sizeof(SHA256_CTX)
    digest_size: int
    # Offsets of the `Nl` (low 32 bits of the bit count) and `num` (bytes buffered in
    # the pending block) fields, used to reject a state that is not a real context.
    nl_offset: int
    num_offset: int
    prefix: str  # symbol prefix in libcrypto: MD5_Init, SHA256_Init, ...


ALGORITHMS: dict[str, _Algorithm] = {
    # MD5_CTX { MD5_LONG A,B,C,D; MD5_LONG Nl,Nh; MD5_LONG data[16]; unsigned num; }
    "md5": _Algorithm("md5", 92, 16, nl_offset=16, num_offset=88, prefix="MD5"),
    # SHA256_CTX { SHA_LONG h[8]; SHA_LONG Nl,Nh; SHA_LONG data[16]; unsigned num, md_len; }
    "sha256": _Algorithm("sha256", 112, 32, nl_offset=32, num_offset=104, prefix="SHA256"),
}

_BLOCK = 64  # both algorithms hash 64-byte blocks; `num` is always < 64


@dataclass(frozen=True)
class _Functions:
    init: Callable[..., int]
    update: Callable[..., int]
    final: Callable[..., int]


def _candidate_paths() -> list[str]:
    """Where to look for libcrypto, best first: the copy already mapped by ``_hashlib``."""
    found: list[str] = []
    try:
        import _hashlib  # noqa: F401  (maps libcrypto into this process)

        # On Linux prefer the exact file _hashlib linked, so both agree on the library.
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            for line in maps:
                path = line.rsplit(None, 1)[-1]
                if "/libcrypto" in path and path not in found:
                    found.append(path)
    except (ImportError, OSError):
        pass
    by_name = ctypes.util.find_library("crypto")
    if by_name:
        found.append(by_name)
    found += ["libcrypto.so.3", "libcrypto.so.1.1", "libcrypto.dylib"]
    return found


def _load_functions(lib: ctypes.CDLL) -> dict[str, _Functions]:
    table = {}
    for alg in ALGORITHMS.values():
        init = getattr(lib, f"{alg.prefix}_Init")
        update = getattr(lib, f"{alg.prefix}_Update")
        final = getattr(lib, f"{alg.prefix}_Final")
        init.argtypes = [ctypes.c_void_p]
        update.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
        final.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        for fn in (init, update, final):
            fn.restype = ctypes.c_int
        table[alg.name] = _Functions(init, update, final)
    return table


def _self_test(table: dict[str, _Functions]) -> bool:
    """Check the assumed struct sizes against this libcrypto before trusting it.

    The context lives in a buffer with a guard zone after it; if the library wrote past
    ``ctx_size`` the layout is not the one we assume.  Then a save/load round trip must
    reproduce hashlib's digest.
    """
    sample = bytes(range(256)) * 3
    guard = 64
    for alg in ALGORITHMS.values():
        fns = table[alg.name]
        buf = ctypes.create_string_buffer(b"\xa5" * (alg.ctx_size + guard), alg.ctx_size + guard)
        if fns.init(buf) != 1 or fns.update(buf, sample[:100], 100) != 1:
            return False
        if buf.raw[alg.ctx_size :] != b"\xa5" * guard:
            return False
        moved = ctypes.create_string_buffer(buf.raw[: alg.ctx_size], alg.ctx_size)
        if fns.update(moved, sample[100:], len(sample) - 100) != 1:
            return False
        out = ctypes.create_string_buffer(alg.digest_size)
        if fns.final(out, moved) != 1:
            return False
        if out.raw != hashlib.new(alg.name, sample).digest():
            return False
    return True


def _load_libcrypto(candidates: Iterable[str]) -> tuple[str, dict[str, _Functions]] | None:
    """The first candidate that loads and passes the self-test, with its functions."""
    for name in candidates:
        try:
            table = _load_functions(ctypes.CDLL(name))
        except (OSError, AttributeError):
            continue
        if _self_test(table):
            return name, table
    return None


_LOADED = _load_libcrypto(_candidate_paths())
_LIBCRYPTO: str | None = _LOADED[0] if _LOADED else None
_FUNCTIONS: dict[str, _Functions] | None = _LOADED[1] if _LOADED else None
if _FUNCTIONS is not None:
    md5_lanes.use_scalar(ctypes.cast(_FUNCTIONS["md5"].update, ctypes.c_void_p).value or 0)


def digests_available() -> bool:
    """True when resumable (serializable) digests can be made on this host."""
    return _FUNCTIONS is not None


def digest_backend() -> str:
    """What backs the digests, for a startup log line or a health report."""
    return f"libcrypto {_LIBCRYPTO}" if _FUNCTIONS is not None else "hashlib (not resumable)"


def _state_tag(alg: _Algorithm, machine: str | None = None, byteorder: str | None = None) -> bytes:
    """The layout tag stored before the raw context; a state is loadable only where equal."""
    machine = machine if machine is not None else platform.machine()
    byteorder = byteorder if byteorder is not None else sys.byteorder
    return f"rdigest {STATE_VERSION} {alg.name} {alg.ctx_size} {machine} {byteorder}\n".encode()


def _algorithm(name: str) -> _Algorithm:
    try:
        return ALGORITHMS[name]
    except KeyError:
        raise ValueError(
            f"unsupported digest {name!r}; expected one of {sorted(ALGORITHMS)}"
        ) from None


def _as_pointer(data: Buffer) -> tuple[object, int]:
    """An argument for ``*_Update`` pointing at ``data``'s memory, without copying it."""
    if isinstance(data, bytes):
        return data, len(data)  # ctypes passes a pointer to the bytes' own buffer
    if isinstance(data, bytearray):
        return (ctypes.c_char * len(data)).from_buffer(data), len(data)
    view = memoryview(data)
    if not view.c_contiguous:
        flat = view.tobytes()
        return flat, len(flat)
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    n = view.nbytes
    if view.readonly:
        # ctypes cannot borrow a read-only buffer; a copy is the price (the server reads
        # into writable buffers, so this is the rare path).
        flat = view.tobytes()
        return flat, n
    return (ctypes.c_char * n).from_buffer(view), n


class Digest:
    """What the store needs from a digest, resumable or not."""

    name: str

    @property
    def length(self) -> int:
        """Bytes hashed so far: lets the store check a state against the committed offset."""
        raise NotImplementedError

    def update(self, data: Buffer) -> None:
        raise NotImplementedError

    def update_all(self, chunks: Sequence[Buffer]) -> None:
        """Hash ``chunks`` in order (a block as it came off the socket)."""
        for chunk in chunks:
            self.update(chunk)

    def state(self) -> bytes | None:
        raise NotImplementedError

    def digest(self) -> bytes:
        raise NotImplementedError

    def hexdigest(self) -> str:
        return self.digest().hex()

    def copy(self) -> Digest:
        raise NotImplementedError


class ResumableDigest(Digest):
    """An md5 or sha256 digest backed by an OpenSSL context whose bytes are its state."""

    __slots__ = ("_alg", "_ctx", "_fns", "name")

    def __init__(self, alg: _Algorithm, ctx: ctypes.Array[ctypes.c_char]) -> None:
        # Use new() / from_state(); this only wraps an already initialised context.
        assert _FUNCTIONS is not None
        self._alg = alg
        self._ctx = ctx
        self._fns = _FUNCTIONS[alg.name]
        self.name = alg.name

    @staticmethod
    def new(name: str, *, native: bool | None = None) -> Digest:
        """A fresh digest of ``name`` ("md5" or "sha256").

        ``native=None`` (the production default) gives a ResumableDigest when libcrypto is
        usable, else a HashlibDigest; ``native=False`` forces the hashlib fallback (the test
        seam); ``native=True`` requires libcrypto and raises DigestUnavailableError.
        """
        alg = _algorithm(name)
        if native is False or (native is None and _FUNCTIONS is None):
            return HashlibDigest(name)
        if _FUNCTIONS is None:
            raise DigestUnavailableError("libcrypto could not be loaded")
        ctx = ctypes.create_string_buffer(alg.ctx_size)
        if _FUNCTIONS[name].init(ctx) != 1:
            raise DigestUnavailableError(f"{alg.prefix}_Init failed")
        return ResumableDigest(alg, ctx)

    @classmethod
    def from_state(cls, name: str, state: bytes) -> ResumableDigest:
        """The digest saved by ``state()``; DigestStateError if it cannot be used here."""
        alg = _algorithm(name)
        if _FUNCTIONS is None:
            raise DigestStateError("libcrypto is not available on this host")
        header, sep, raw = bytes(state).partition(b"\n")
        if not sep or header + sep != _state_tag(alg):
            raise DigestStateError(
                f"digest state tag {header[:80]!r} does not match this platform "
                f"({_state_tag(alg).strip()!r})"
            )
        if len(raw) != alg.ctx_size:
            raise DigestStateError(f"{name} state is {len(raw)} bytes, expected {alg.ctx_size}")
        # Cheap sanity check that these bytes are a context: the buffered byte count is
        # below one block and agrees with the total bit count.
        (nl,) = struct.unpack_from("=I", raw, alg.nl_offset)
        (num,) = struct.unpack_from("=I", raw, alg.num_offset)
        if num >= _BLOCK or (nl >> 3) % _BLOCK != num:
            raise DigestStateError(f"{name} state is not a valid context")
        return cls(alg, ctypes.create_string_buffer(raw, alg.ctx_size))

    @property
    def length(self) -> int:
        # The context counts bits in two 32-bit words, Nl (low) and Nh (high).
        nl, nh = struct.unpack_from("=II", self._ctx.raw, self._alg.nl_offset)
        return ((nh << 32) | nl) >> 3

    def update(self, data: Buffer) -> None:
        """Hash ``data`` at C speed, without copying writable buffers; releases the GIL."""
        arg, n = _as_pointer(data)
        if n and self._fns.update(self._ctx, arg, n) != 1:
            raise RuntimeError(f"{self._alg.prefix}_Update failed")
        del arg  # drop the exported buffer now, so a bytearray can be resized again

    def update_all(self, chunks: Sequence[Buffer]) -> None:
        """md5 goes to the multi-buffer engine, where it shares a core with the other
        uploads hashing at the same time (store/md5_lanes.py)."""
        if self._alg.name == "md5" and md5_lanes.lanes():
            md5_lanes.update(self._ctx, chunks)
        else:
            super().update_all(chunks)

    def state(self) -> bytes:
        """Tagged raw context, to be stored and later passed to ``from_state``."""
        return _state_tag(self._alg) + self._ctx.raw

    def digest(self) -> bytes:
        # *_Final wipes the context it finalizes, so finalize a copy: the digest can keep
        # growing after a hexdigest() (non-destructive, like hashlib).
        scratch = ctypes.create_string_buffer(self._ctx.raw, self._alg.ctx_size)
        out = ctypes.create_string_buffer(self._alg.digest_size)
        if self._fns.final(out, scratch) != 1:
            raise RuntimeError(f"{self._alg.prefix}_Final failed")
        return out.raw

    def copy(self) -> ResumableDigest:
        return ResumableDigest(
            self._alg, ctypes.create_string_buffer(self._ctx.raw, self._alg.ctx_size)
        )

    def __repr__(self) -> str:
        return f"<ResumableDigest {self.name}>"


class HashlibDigest(Digest):
    """Fallback when libcrypto is unusable: correct, but its state cannot be saved."""

    __slots__ = ("_h", "_length", "name")

    def __init__(self, name: str, _h: hashlib._Hash | None = None, _length: int = 0) -> None:
        _algorithm(name)
        self.name = name
        self._h = _h if _h is not None else hashlib.new(name)
        self._length = _length

    @property
    def length(self) -> int:
        return self._length

    def update(self, data: Buffer) -> None:
        self._h.update(data)  # hashlib also releases the GIL for large buffers
        self._length += memoryview(data).nbytes

    def state(self) -> None:
        return None

    def digest(self) -> bytes:
        return self._h.digest()

    def copy(self) -> HashlibDigest:
        return HashlibDigest(self.name, self._h.copy(), self._length)

    def __repr__(self) -> str:
        return f"<HashlibDigest {self.name}>"
