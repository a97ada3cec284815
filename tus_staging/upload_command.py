"""``tus-staging upload FILE|DIR... --url URL``: a resuming command-line client on tuspy.

Directories are uploaded with their relative paths (under ``--dest``). Upload URLs are
remembered under the user's cache directory, keyed by tuspy's file fingerprint, so that
running the same command again after a failure or Ctrl-C resumes where it stopped.
Network errors, 423 and 5xx answers are retried with exponential backoff (the offset is
asked again before each retry); other refusals fail the file with the server's reason.
Progress: a bar per file and one for the total (bytes, rate, ETA), on stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential
from tqdm import tqdm
from tusclient.client import TusClient
from tusclient.exceptions import TusCommunicationError
from tusclient.uploader import Uploader

from .url_store import LockedUrlStore

RETRIES = 8
INTERRUPTED = 130  # the shell's status for Ctrl-C


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


def is_transient(error: BaseException) -> bool:
    """Worth another try: the network, a busy upload (423), the server's own trouble."""
    if not isinstance(error, TusCommunicationError):
        return isinstance(error, OSError)
    status = error.status_code
    return status is None or status == 423 or status >= 500


def describe(error: BaseException) -> str:
    if isinstance(error, TusCommunicationError) and error.response_content:
        content = error.response_content
        text = content.decode(errors="replace") if isinstance(content, bytes) else str(content)
        return f"{error.status_code}: {text.strip()}"
    return str(error) or type(error).__name__


class UploadRun:
    def __init__(self, args: argparse.Namespace):
        token = args.token or os.environ.get("TUS_STAGING_TOKEN")
        self.client = TusClient(
            args.url, headers={"Authorization": f"Bearer {token}"} if token else {}
        )
        self.chunk_size: int = args.chunk_size
        self.checksum: bool = args.checksum
        self.storage = LockedUrlStore(url_storage_path())
        self.retrying = Retrying(
            stop=stop_after_attempt(RETRIES),
            wait=wait_exponential(multiplier=args.retry_delay, max=60),
            retry=retry_if_exception(is_transient),
            reraise=True,
        )

    def uploader(self, local: Path, metadata: dict[str, str]) -> Uploader:
        def make() -> Uploader:
            return self.client.uploader(
                str(local),
                chunk_size=self.chunk_size,
                metadata=metadata,
                store_url=True,
                url_storage=self.storage,
                upload_checksum=self.checksum,
                retries=0,  # retries are ours, with backoff and a fresh offset
            )

        try:
            return make()
        except TusCommunicationError as error:
            if error.status_code not in (404, 410):
                raise
            # The remembered upload expired or was removed: start it again.
            self.storage.remove_item(self.fingerprint(local))
            return make()

    def fingerprint(self, local: Path) -> str:
        with open(local, "rb") as stream:
            return self.client.uploader(str(local)).fingerprinter.get_fingerprint(stream)

    def upload_one(self, local: Path, metadata: dict[str, str], total: tqdm) -> int:
        """Upload (or resume) one file; returns the offset it resumed from."""
        uploader = self.retrying(self.uploader, local, metadata)
        size = uploader.get_file_size()
        resumed_from = uploader.offset
        total.update(resumed_from)
        with tqdm(
            total=size, initial=resumed_from, desc=local.name[:30], unit="B",
            unit_scale=True, unit_divisor=1024, leave=False, file=sys.stderr,
        ) as bar:  # fmt: skip
            if uploader.url is None or size == 0:
                self.retrying(uploader.upload_chunk if size else uploader.upload)
            while uploader.offset < size:
                before = uploader.offset
                for attempt in self.retrying:
                    with attempt:
                        if attempt.retry_state.attempt_number > 1:
                            uploader.offset = uploader.get_offset()
                        uploader.upload_chunk()
                bar.update(uploader.offset - before)
                total.update(uploader.offset - before)
        self.storage.remove_item(self.fingerprint(local))
        return resumed_from


def upload(args: argparse.Namespace) -> int:
    try:
        files = list(files_to_upload(args.paths, args.dest))
    except FileNotFoundError as error:
        print(f"tus-staging upload: {error}", file=sys.stderr)
        return 2
    run = UploadRun(args)
    failures = 0
    total_size = sum(local.stat().st_size for local, _ in files)
    with tqdm(
        total=total_size, desc="total", unit="B", unit_scale=True, unit_divisor=1024,
        file=sys.stderr,
    ) as total:  # fmt: skip
        for local, directory in files:
            metadata = {"filename": local.name}
            if str(directory) != ".":
                metadata["destPath"] = str(directory)
            try:
                resumed_from = run.upload_one(local, metadata, total)
            except KeyboardInterrupt:
                total.close()
                print("\ninterrupted: run the same command again to resume", file=sys.stderr)
                return INTERRUPTED
            except (TusCommunicationError, OSError) as error:
                failures += 1
                total.write(f"failed: {local}: {describe(error)}", file=sys.stderr)
                continue
            note = f" (resumed at {resumed_from} bytes)" if resumed_from else ""
            total.write(f"uploaded {local} → {metadata.get('destPath', '.')}/{local.name}{note}",
                        file=sys.stderr)  # fmt: skip
    run.storage.close()
    if failures:
        print(f"tus-staging upload: {failures} of {len(files)} file(s) failed", file=sys.stderr)
        return 1
    return 0
