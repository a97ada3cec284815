"""Copying a final upload's partial uploads into it, in order, in one pass.

The pass writes the parts' bytes into the final's partial file one block per executor hop
(the lock renewed between blocks) and computes the digests and the scanner state as it
goes, so the final is then finalized like any upload, without reading anything again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from .locks import UploadLock, renew_between
from .partial import READ_BLOCK, PartialWriter, StreamState, create_partial, remove_partial


async def copy_parts(
    lock: UploadLock, target: Path, sources: list[Path], digest_names: list[str]
) -> PartialWriter:
    """The final's partial file made anew from ``sources``; returns its (closed) writer,
    whose offset and stream state describe everything copied."""
    # A concatenation interrupted by a crash starts over from an empty file.
    await asyncio.to_thread(remove_partial, target)
    await asyncio.to_thread(create_partial, target)
    writer = await asyncio.to_thread(PartialWriter.open, target, 0, StreamState.fresh(digest_names))
    try:
        for source in sources:
            handle: BinaryIO = await asyncio.to_thread(open, source, "rb")
            try:
                await renew_between(lock, _copy_step(handle, writer))
            finally:
                await asyncio.to_thread(handle.close)
        await asyncio.to_thread(writer.sync)
    finally:
        await asyncio.to_thread(writer.close)
    return writer


def _copy_step(handle: BinaryIO, writer: PartialWriter) -> Callable[[], int]:
    def step() -> int:
        block = handle.read(READ_BLOCK)
        if block:
            writer.write([block])
        return len(block)

    return step
