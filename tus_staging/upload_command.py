"""``tus-staging upload FILE|DIR...``: send files over tus, resuming what an earlier run left.

Directories are uploaded with their relative paths (under ``--dest``). Each file's upload
URL is remembered (url_store) under a key of everything that must match for a resume to
be right; before resuming, the server is asked (HEAD) whether that upload still exists
and has this file's length and metadata, else a new upload starts. Network errors, 423
and 5xx answers are retried with exponential backoff, asking the server's offset before
each retry; other refusals fail the file with the server's reason. ``--parallel N``
uploads N files at once, each in its own thread and connection.
"""

from __future__ import annotations

import argparse
import hashlib
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TypeVar

from .client_cli import FAILED, OK, USAGE, report
from .client_http import ServerError, base_url, new_session, retrying
from .progress import FileProgress, Progress, human_bytes, printable
from .tus_client import FileChanged, FileRange, TusClient, find_endpoint
from .url_store import ResumeStore, cache_dir, resume_key, token_identity

FINGERPRINT_BYTES = 64 * 1024
GONE = (403, 404, 410)  # a remembered upload that is not (or no longer) ours to continue
STOP_WAIT = 10.0  # seconds Ctrl-C waits for the uploads in flight to let go


@dataclass(frozen=True)
class FileJob:
    local: Path  # absolute
    folder: PurePosixPath  # its folder in the staging area ("." for the home)
    size: int
    mtime_ns: int

    @property
    def destination(self) -> str:
        return str(self.folder / self.local.name)

    @property
    def metadata(self) -> dict[str, str]:
        fields = {"filename": self.local.name}
        if str(self.folder) != ".":
            fields["destPath"] = str(self.folder)
        return fields


@dataclass(frozen=True)
class FileResult:
    job: FileJob
    resumed_from: int = 0
    error: str | None = None


def files_to_upload(paths: Sequence[Path], dest: str) -> list[FileJob]:
    """Every file given, directories walked, each with its folder in the staging area.

    FileNotFoundError for a path that is not there; ValueError when two files would
    land on the same destination."""
    root = PurePosixPath(dest.strip("/")) if dest.strip("/") else PurePosixPath(".")
    found: list[tuple[Path, PurePosixPath]] = []
    for path in paths:
        if path.is_dir():
            for file in sorted(p for p in path.rglob("*") if p.is_file()):
                relative = file.relative_to(path.parent).parent
                found.append((file, root / PurePosixPath(*relative.parts)))
        elif path.is_file():
            found.append((path, root))
        else:
            raise FileNotFoundError(f"{path}: no such file or directory")
    jobs, seen = [], {}
    for file, folder in found:
        info = file.stat()
        job = FileJob(file.resolve(), folder, info.st_size, info.st_mtime_ns)
        if job.destination in seen:
            raise ValueError(
                f"{seen[job.destination]} and {file} would both be uploaded to {job.destination}"
            )
        seen[job.destination] = file
        jobs.append(job)
    return jobs


def fingerprint(path: Path) -> str:
    """md5 of the first 64 KiB, as tus clients fingerprint files."""
    with open(path, "rb") as handle:
        return hashlib.md5(handle.read(FINGERPRINT_BYTES)).hexdigest()


def upload_key(endpoint: str, token: str | None, job: FileJob) -> str:
    """The resume store's key of ``job``: this server, this user, this destination, this
    local file as it is now."""
    return resume_key(
        kind="upload", endpoint=endpoint, user=token_identity(token),
        destination=job.destination, path=str(job.local), size=job.size,
        mtime_ns=job.mtime_ns, fingerprint=fingerprint(job.local),
    )  # fmt: skip


class Uploads:
    """One run's settings and state, shared by its worker threads."""

    def __init__(self, args: argparse.Namespace, endpoint: str, progress: Progress, many: bool):
        self.endpoint = endpoint
        self.token: str | None = args.token
        self.chunk_size: int = args.chunk_size
        self.checksum: bool = args.checksum
        self.retry_delay: float = args.retry_delay
        self.store = ResumeStore(cache_dir() / "uploads.json")
        self.progress = progress
        self.many = many  # a bar per file besides the total
        self.cancel = threading.Event()
        self._local = threading.local()

    def client(self) -> TusClient:
        if not hasattr(self._local, "client"):
            self._local.client = TusClient(self.endpoint, new_session(self.token))
        return self._local.client

    def resume_point(self, key: str, job: FileJob) -> tuple[str | None, int]:
        """(remembered upload URL, its offset), or (None, 0) when there is none to continue."""
        entry = self.store.get(key)
        if entry is None or not isinstance(entry.get("url"), str):
            return None, 0
        try:
            state = retrying(self.retry_delay)(self.client().state, entry["url"])
        except ServerError as error:
            if error.status not in GONE:
                raise
            state = None
        expected = {k: v.encode("utf-8") for k, v in job.metadata.items()}
        if state is None or (state.length, state.metadata) != (job.size, expected):
            self.store.remove(key)  # expired, removed, or another file's upload
            return None, 0
        return entry["url"], min(state.offset, job.size)

    def upload(self, job: FileJob) -> FileResult:
        """Upload (or resume) one file; raises on failure (the command reports it per file)."""
        key = upload_key(self.endpoint, self.token, job)
        url, offset = self.resume_point(key, job)
        resumed_from = offset
        if url is None:
            url = retrying(self.retry_delay)(self.client().create, job.size, job.metadata)
            if job.size:
                self.store.put(key, {"url": url, "path": str(job.local)})
        bar = self.progress.file(job.local.name, job.size, offset, own_bar=self.many)
        try:
            with open(job.local, "rb") as handle:
                while offset < job.size:
                    offset = self.send_chunk(url, handle.fileno(), offset, job.size, bar)
                    bar.rewind_to(offset)  # what the server holds, whatever was sent
        except ServerError as error:
            if error.status in GONE:
                self.store.remove(key)  # the next run starts it again
            raise
        finally:
            bar.close()
        self.store.remove(key)
        return FileResult(job, resumed_from)

    def send_chunk(self, url: str, fd: int, offset: int, size: int, bar: FileProgress) -> int:
        """One PATCH from ``offset`` (retried from the server's offset); the new offset."""
        for attempt in retrying(self.retry_delay):
            with attempt:
                if attempt.retry_state.attempt_number > 1:
                    offset = self.client().state(url).offset
                    bar.rewind_to(offset)
                length = min(self.chunk_size, size - offset)
                body = FileRange(fd, offset, length, bar.advance, self.cancel.is_set)
                return self.client().patch(url, body, self.checksum)
        raise AssertionError("unreachable: retrying reraises")


Job = TypeVar("Job")
Result = TypeVar("Result")


def run_in_threads(
    jobs: Sequence[Job], count: int, work: Callable[[Job], Result], cancel: threading.Event
) -> Iterator[tuple[Job, Result | BaseException]]:
    """(job, its result or exception) as each finishes, ``count`` at a time.

    The threads are daemons: after Ctrl-C the caller sets ``cancel``, waits a moment for
    them to let go, and may exit without them."""
    todo: queue.SimpleQueue[Job] = queue.SimpleQueue()
    done: queue.SimpleQueue[tuple[Job, Result | BaseException]] = queue.SimpleQueue()
    for job in jobs:
        todo.put(job)

    def worker() -> None:
        while not cancel.is_set():
            try:
                job = todo.get_nowait()
            except queue.Empty:
                return
            try:
                done.put((job, work(job)))
            except BaseException as error:
                done.put((job, error))

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(min(count, len(jobs)))]
    for thread in threads:
        thread.start()
    try:
        for _ in jobs:
            yield done.get()
    finally:
        cancel.set()
        deadline = time.monotonic() + STOP_WAIT
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))


def summary(results: list[FileResult], seconds: float) -> str:
    """files, bytes, time, rate of the bytes sent in this run, how many resumed or failed."""
    done = [r for r in results if r.error is None]
    total = sum(r.job.size for r in done)
    sent = sum(r.job.size - r.resumed_from for r in done)
    rate = sent / seconds / 1e6 if seconds > 0 else 0.0
    line = (
        f"{len(done)} file{'s' * (len(done) != 1)}, {human_bytes(total)} "
        f"({human_bytes(sent)} sent) in {seconds:.1f} s, {rate:.1f} MB/s, "
        f"{sum(1 for r in done if r.resumed_from)} resumed"
    )
    failed = len(results) - len(done)
    return line + (f", {failed} failed" if failed else "")


def describe(result: FileResult) -> str:
    job = result.job
    if result.error is not None:
        return f"failed: {printable(str(job.local))}: {result.error}"
    note = f" (resumed at {result.resumed_from} bytes)" if result.resumed_from else ""
    return f"uploaded {printable(str(job.local))} -> {printable(job.destination)}{note}"


def upload(args: argparse.Namespace) -> int:
    started = time.monotonic()
    try:
        url = base_url(args.url)
        jobs = files_to_upload(args.paths, args.dest)
    except (FileNotFoundError, ValueError) as error:
        report("upload", str(error))
        return USAGE
    endpoint = find_endpoint(new_session(args.token), url)
    progress = Progress(sum(job.size for job in jobs))
    run = Uploads(args, endpoint, progress, many=len(jobs) > 1)
    results: list[FileResult] = []
    try:
        for job, outcome in run_in_threads(jobs, args.parallel, run.upload, run.cancel):
            # OSError includes requests' errors (RequestException is one).
            if isinstance(outcome, ServerError | OSError | FileChanged):
                outcome = FileResult(job, error=str(outcome) or type(outcome).__name__)
            elif isinstance(outcome, BaseException):
                raise outcome
            results.append(outcome)
            progress.say(describe(outcome))
    finally:
        progress.close()
    print(summary(results, time.monotonic() - started), file=sys.stderr)
    failed = sum(1 for r in results if r.error is not None)
    if failed:
        report("upload", f"{failed} of {len(jobs)} file(s) failed")
        return FAILED
    return OK
