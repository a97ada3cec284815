"""``tus-staging get PATH [DEST]``: download a file, continuing what an earlier run left.

Bytes go into ``DEST.part``. What that partial file is a copy of (the server's size,
mtime and md5 from /metadata) is remembered in the client's resume store, so a run
stopped in the middle (Ctrl-C, kill, a dropped link) continues with a Range request from
the partial file's size, as long as the server's file is still the same one. At the end
the md5 of the whole file is checked against the record's; then the partial file is
renamed into place and given the server's mtime.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from .area_commands import client_for
from .client_cli import FAILED, OK, USAGE, report
from .client_http import ServerError, retrying
from .progress import FileProgress, Progress, printable
from .staging_client import Record, StagingClient, area_path
from .tus_client import BLOCK
from .url_store import ResumeStore, cache_dir, resume_key, token_identity

PARTIAL_SUFFIX = ".part"


def local_target(remote: str, dest: str | None) -> Path:
    """Where the file lands: DEST, or DEST/name when DEST is a folder, or ./name."""
    name = PurePosixPath(remote).name
    if dest is None:
        return Path(name)
    target = Path(dest)
    if dest.endswith(("/", os.sep)) or target.is_dir():
        return target / name
    return target


class PartialFile:
    """The bytes received so far, on disk and in the running md5."""

    def __init__(self, handle: BinaryIO, offset: int, bar: FileProgress):
        self.handle, self.offset, self.bar = handle, offset, bar
        self.digest = hashlib.md5()
        handle.seek(0)
        while handle.tell() < offset:  # the part an earlier run fetched
            block = handle.read(min(BLOCK, offset - handle.tell()))
            if not block:
                raise OSError(f"the partial file shrank below {offset} bytes while read")
            self.digest.update(block)
        handle.truncate(offset)

    def restart(self) -> None:
        self.handle.seek(0)
        self.handle.truncate()
        self.digest = hashlib.md5()
        self.offset = 0
        self.bar.rewind_to(0)

    def append(self, block: bytes) -> None:
        self.handle.write(block)
        self.digest.update(block)
        self.offset += len(block)
        self.bar.advance(len(block))


def fetch_rest(client: StagingClient, remote: str, size: int, partial: PartialFile) -> None:
    """One GET of the bytes the partial file lacks."""
    with client.download(remote, partial.offset) as response:
        if response.status_code == 206:
            start = response.headers.get("Content-Range", "").removeprefix("bytes ")
            if not start.startswith(f"{partial.offset}-"):
                raise ServerError(None, f"the server sent another range ({start or 'none'})")
        elif partial.offset:
            partial.restart()  # the whole file came back: take it from the start
        for block in response.iter_content(BLOCK):
            if partial.offset + len(block) > size:
                raise ServerError(None, f"the server sent more than the {size} bytes announced")
            partial.append(block)


def resumable_offset(partial: Path, remembered: Record | None, validator: Record) -> int:
    """How much of ``partial`` can be kept: all of it if it is a copy of the same file."""
    try:
        have = partial.stat().st_size
    except FileNotFoundError:
        return 0
    return have if remembered == validator and have <= validator["size"] else 0


def fetch(
    client: StagingClient, remote: str, size: int, partial_path: Path, offset: int, delay: float
) -> tuple[int, str]:
    """Fill the partial file from ``offset`` (retrying what is worth it); (its size, md5)."""
    progress = Progress(size)
    bar = progress.file(partial_path.name.removesuffix(PARTIAL_SUFFIX), size, offset, False)
    with open(partial_path, "r+b" if offset else "wb") as handle:
        partial = PartialFile(handle, offset, bar)
        try:
            for attempt in retrying(delay):
                with attempt:
                    if partial.offset < size:
                        fetch_rest(client, remote, size, partial)
        finally:
            progress.close()
        handle.flush()
        os.fsync(handle.fileno())
    return partial.offset, partial.digest.hexdigest()


def download(args: argparse.Namespace) -> int:
    client = client_for(args)
    remote = area_path(args.path)
    record = client.metadata(remote)
    if record.get("isFolder") or not remote:
        report("get", f"{remote or '/'} is a folder")
        return USAGE
    size = record.get("size")
    if not isinstance(size, int) or size < 0:
        raise ServerError(None, f"the metadata record of {remote} has no size")
    target = local_target(remote, args.dest)
    partial_path = target.with_name(target.name + PARTIAL_SUFFIX)
    store = ResumeStore(cache_dir() / "downloads.json")
    key = resume_key(
        kind="download", server=client.base_url, user=token_identity(args.token),
        path=remote, target=str(target.resolve()),
    )  # fmt: skip
    validator = {"size": size, "mtime": record.get("mtime"), "md5": record.get("md5")}
    resumed_from = resumable_offset(partial_path, store.get(key), validator)
    store.put(key, validator)

    def discard() -> None:
        partial_path.unlink(missing_ok=True)
        store.remove(key)

    try:
        got, md5 = fetch(client, remote, size, partial_path, resumed_from, args.retry_delay)
    except ServerError as error:
        if error.status is None and not error.unreachable:
            discard()  # the server's answer made no sense: start clean next time
        raise
    if got != size or (record.get("md5") and md5 != record["md5"]):
        discard()
        report(
            "get",
            f"{remote}: got {got} bytes with md5 {md5}, expected {size} with md5 "
            f"{record.get('md5')}; the partial file was removed",
        )
        return FAILED
    os.replace(partial_path, target)
    if isinstance(record.get("mtime"), int):
        os.utime(target, ns=(record["mtime"] * 1_000_000, record["mtime"] * 1_000_000))
    store.remove(key)
    note = f" (resumed at {resumed_from} bytes)" if resumed_from else ""
    print(
        f"downloaded {printable(remote)} -> {printable(str(target))}{note}, md5 {md5} ok",
        file=sys.stderr,
    )
    return OK
