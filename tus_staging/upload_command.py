"""``tus-staging upload FILE|DIR... --url URL``: a resuming command-line client on tuspy.

Directories are uploaded with their relative paths (under ``--dest``). Upload URLs are
remembered under the user's cache directory, keyed by tuspy's file fingerprint, so that
running the same command again after a failure or Ctrl-C resumes where it stopped.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from tusclient.client import TusClient
from tusclient.exceptions import TusCommunicationError, TusUploadFailed
from tusclient.storage.filestorage import FileStorage


def url_storage_path() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "tus-staging" / "uploads.json"


def files_to_upload(paths: list[Path], dest: str) -> Iterator[tuple[Path, PurePosixPath]]:
    """(local file, destination directory in the staging area) for every file given."""
    root = PurePosixPath(dest.strip("/")) if dest.strip("/") else PurePosixPath(".")
    for path in paths:
        if path.is_dir():
            for file in sorted(p for p in path.rglob("*") if p.is_file()):
                relative = file.relative_to(path.parent).parent
                yield file, root / PurePosixPath(*relative.parts)
        elif path.is_file():
            yield path, root
        else:
            raise FileNotFoundError(f"{path}: no such file or directory")


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"


def upload(args: argparse.Namespace) -> int:
    token = args.token or os.environ.get("TUS_STAGING_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    client = TusClient(args.url, headers=headers)
    storage_path = url_storage_path()
    storage_path.parent.mkdir(parents=True, exist_ok=True)
    storage = FileStorage(str(storage_path))
    try:
        files = list(files_to_upload(args.paths, args.dest))
    except FileNotFoundError as error:
        print(f"tus-staging upload: {error}", file=sys.stderr)
        return 2
    failures = 0
    for local, directory in files:
        metadata = {"filename": local.name}
        if str(directory) != ".":
            metadata["destPath"] = str(directory)
        try:
            upload_one(client, storage, local, metadata, args.chunk_size)
        except (TusCommunicationError, TusUploadFailed, OSError) as error:
            failures += 1
            print(f"\nfailed: {local}: {error}", file=sys.stderr)
    storage.close()
    if failures:
        print(f"tus-staging upload: {failures} of {len(files)} file(s) failed", file=sys.stderr)
        return 1
    return 0


def upload_one(
    client: TusClient, storage: FileStorage, local: Path, metadata: dict[str, str], chunk: int
) -> None:
    uploader = client.uploader(
        str(local),
        chunk_size=chunk,
        metadata=metadata,
        store_url=True,
        url_storage=storage,
        retries=5,
        retry_delay=2,
    )
    size = uploader.get_file_size()
    start_offset = uploader.offset
    started = time.monotonic()
    while uploader.offset < size:
        uploader.upload_chunk()
        elapsed = max(time.monotonic() - started, 1e-6)
        rate = (uploader.offset - start_offset) / elapsed
        print(
            f"\r{local}: {human(uploader.offset)} / {human(size)} ({human(rate)}/s)",
            end="",
            file=sys.stderr,
            flush=True,
        )
    if size == 0 and uploader.url is None:
        uploader.upload()
    resumed = f", resumed at {human(start_offset)}" if start_offset else ""
    print(f"\r{local}: done, {human(size)}{resumed}{' ' * 20}", file=sys.stderr)
    storage.remove_item(uploader.fingerprinter.get_fingerprint(uploader.get_file_stream()))
