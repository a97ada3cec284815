"""Archive extraction inside a user's area: zip, tar (plain, gzip, bzip2), gz and bz2.

What lands is what ``unzip``, ``tar x``, ``gzip -d`` and ``bzip2 -d`` would leave beside
the archive (a single-file ``.gz``/``.bz2`` replaces the archive, as those tools do), but
safely:

* everything is written into a hidden temporary folder beside the archive first, and
  moved into place only when the whole archive came out well: a refused, broken or
  oversized archive leaves nothing behind; what an extraction killed on the way (a
  crash, kill -9) left is removed by the next extraction in the same folder, once
  nothing in it was written for ``LEFTOVER_AFTER`` seconds;
* no member lands outside the archive's folder: leading ``/`` is stripped (as tar
  does), ``..`` is refused, and every name must pass the area's naming rules;
* links: absolute ones and ones leading outside the archive's own tree are refused.
  Symlinks are created last, once every file is written (no write ever goes through
  one) and each is then checked where it really resolves;
* devices, FIFOs and sockets are skipped; modes lose set-id and group/other write bits
  (``tarfile``'s ``data`` filter, applied to zip members too);
* the total bytes written and the member count are bounded: a bomb is refused (413)
  as soon as it passes the bound;
* each extracted file gets its metadata sidecar from the same pass that writes it (md5,
  line count, text or binary, head and tail), never a second read.

Nothing clashes silently: when a top-level entry of the archive already exists beside it
the extraction is refused (409) and nothing is moved. All calls block; the service runs
an extraction in a worker thread of its own.
"""

from __future__ import annotations

import bz2
import contextlib
import errno
import gzip
import json
import lzma
import os
import re
import stat
import tarfile
import tempfile
import threading
import time
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from protocol.errors import BadRequest, Conflict, PayloadTooLarge, ServiceUnavailable

from .area_files import make_room, move_no_replace, move_sidecar, remove_path
from .area_listing import UNKNOWN_SOURCE
from .partial import StreamState
from .paths import is_inside
from .sidecar import keep_tail, metadata_record, read_json_object

BLOCK = 1024 * 1024
MAX_LINK_TARGET = 4096  # bytes of a zip symlink's target (PATH_MAX)
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# The temporary folders extract() makes (tempfile.mkdtemp's 8 random characters).
_TEMP_PREFIX, _TEMP_SUFFIX = ".decompress-", ".tmp"
_TEMP_NAME = re.compile(re.escape(_TEMP_PREFIX) + "[a-z0-9_]{8}" + re.escape(_TEMP_SUFFIX))
# A live extraction writes its temporary folder every block (1 MiB): one in which nothing
# was written for this long was left by an extraction that died.
LEFTOVER_AFTER = 15 * 60

# What the decompressors and readers raise for a damaged or unsupported archive.
UNREADABLE = (
    tarfile.TarError,
    zipfile.BadZipFile,
    zlib.error,
    lzma.LZMAError,
    EOFError,
    NotImplementedError,
)
TAR_MODES = {"tar": "r:", "tar.gz": "r:gz", "tar.bz2": "r:bz2"}
SINGLE_FILE_OPENERS: dict[str, Callable[[Path], BinaryIO]] = {
    "gz": gzip.GzipFile,  # type: ignore[dict-item]
    "bz2": bz2.BZ2File,  # type: ignore[dict-item]
}


def archive_kind(name: str) -> tuple[str, str]:
    """The kind of archive a name says (``zip``, ``tar``, ``tar.gz``, ``tar.bz2``, ``gz``,
    ``bz2``) and the extension that says it, by the KBase staging service's rules
    (case-sensitive but for ``.ZIP``); BadRequest for any other name."""
    stem, extension = os.path.splitext(name)
    inner = os.path.splitext(stem)[1]
    if (inner == ".tar" and extension == ".gz") or extension == ".tgz":
        return "tar.gz", extension
    if inner == ".tar" and extension in (".bz", ".bz2"):
        return "tar.bz2", extension
    if extension in (".zip", ".ZIP"):
        return "zip", extension
    if extension == ".tar":
        return "tar", extension
    if extension in (".gz", ".bz2"):
        return extension[1:], extension
    raise BadRequest(f"cannot decompress a {extension} file")


@dataclass(frozen=True)
class ExtractionLimits:
    max_bytes: int  # bytes written in all
    max_members: int  # entries of any kind, skipped ones included


@dataclass(frozen=True)
class Extraction:
    """One archive to extract beside itself, and what the area asks of what lands."""

    archive: Path  # in the staging area
    sidecars: Path  # the sidecar folder of the archive's folder
    metadata_home: Path  # the user's folder of sidecars (stale ones in the way are cleared)
    user: str
    folder: PurePosixPath  # the archive's folder, relative to the user's home
    digest_names: list[str]
    limits: ExtractionLimits
    # Raises (BadRequest, Forbidden) for a path, relative to the archive's folder, that
    # the area does not allow to be created.
    check_name: Callable[[PurePosixPath], None]
    # Set when the server stops: the extraction gives up between blocks, leaving nothing.
    stopping: threading.Event = field(default_factory=threading.Event)


def extract(job: Extraction) -> list[str]:
    """Extract ``job.archive`` beside itself; the names of the top-level entries made."""
    kind, _ = archive_kind(job.archive.name)
    folder = job.archive.parent
    clear_leftovers(folder, job.sidecars, time.time())
    temp = Path(tempfile.mkdtemp(prefix=_TEMP_PREFIX, suffix=_TEMP_SUFFIX, dir=folder))
    sidecar_temp = job.sidecars / temp.name
    try:
        make_room(job.metadata_home, sidecar_temp)
        os.mkdir(sidecar_temp)
        members = _Members(job, temp, sidecar_temp)
        try:
            if kind == "zip":
                _extract_zip(job.archive, members)
            elif kind in TAR_MODES:
                _extract_tar(job.archive, TAR_MODES[kind], members)
            else:
                _extract_single(job.archive, SINGLE_FILE_OPENERS[kind], members)
        except (*UNREADABLE, OSError) as error:
            if isinstance(error, OSError) and error.errno not in (None, errno.ENAMETOOLONG):
                raise  # the filesystem's own trouble (disk full...), not the archive's
            raise BadRequest(
                f"{job.archive.name} is not a {kind} archive we can read: {error}"
            ) from None
        members.finish()
        names = _place(temp, sidecar_temp, folder, job.sidecars)
        if kind in SINGLE_FILE_OPENERS:  # gzip -d / bzip2 -d replace the archive
            _fsync_file(folder / names[0])
            remove_path(job.archive)
            remove_path(job.sidecars / job.archive.name)
        return names
    finally:
        remove_path(temp)
        remove_path(sidecar_temp)


def clear_leftovers(folder: Path, sidecars: Path, now: float) -> None:
    """Remove the temporary folders (and their sidecar twins) of extractions into
    ``folder`` that died: those in which nothing was written for LEFTOVER_AFTER seconds
    before ``now``. Another worker's live extraction keeps writing, and stays."""
    for name in _temp_names(folder):
        if _last_write(folder / name) < now - LEFTOVER_AFTER:
            remove_path(folder / name)
            remove_path(sidecars / name)
    for name in _temp_names(sidecars):  # a twin whose staging folder was already removed
        if (
            not os.path.lexists(folder / name)
            and _last_write(sidecars / name) < now - LEFTOVER_AFTER
        ):
            remove_path(sidecars / name)


def _temp_names(parent: Path) -> list[str]:
    try:
        with os.scandir(parent) as entries:
            return [
                entry.name
                for entry in entries
                if _TEMP_NAME.fullmatch(entry.name) and entry.is_dir(follow_symlinks=False)
            ]
    except (FileNotFoundError, NotADirectoryError):  # (a sidecar file where a folder goes)
        return []


def _last_write(root: Path) -> float:
    """The newest mtime of ``root`` and everything under it (links not followed)."""
    newest = os.lstat(root).st_mtime
    for parent, folders, files in os.walk(root):
        for name in folders + files:
            with contextlib.suppress(FileNotFoundError):
                newest = max(newest, os.lstat(os.path.join(parent, name)).st_mtime)
    return newest


def _refused(error: Exception) -> BadRequest:
    return BadRequest(f"archive refused: {error}")


def _member_path(name: str) -> PurePosixPath | None:
    """A member's path without ``.`` and empty components; None for the archive's root."""
    parts = [part for part in name.split("/") if part not in ("", ".")]
    return PurePosixPath(*parts) if parts else None


def _extract_tar(archive: Path, mode: str, members: _Members) -> None:
    with tarfile.open(archive, mode) as tar:
        for info in tar:
            members.admit()
            safe = members.filtered(info)
            if safe is None:
                continue
            relative = members.checked(safe.name)
            if relative is None:
                continue
            if safe.isreg():
                source = tar.extractfile(safe)
                assert source is not None
                with source:
                    members.file(relative, source, safe.mode or 0o644, safe.mtime)
            elif safe.isdir():
                members.directory(relative, safe.mtime)
            elif safe.issym():
                members.symlink(relative, safe.linkname)
            elif safe.islnk():
                members.hardlink(relative, members.checked(safe.linkname))


def _extract_zip(archive: Path, members: _Members) -> None:
    with zipfile.ZipFile(archive) as zipped:
        infos = zipped.infolist()
        members.admit(len(infos))  # the index says it all: refused before anything is written
        for info in infos:
            if info.flag_bits & 0x1:
                raise BadRequest(f"archive member {info.filename!r} is encrypted")
            safe = members.filtered(_as_tar_member(zipped, info))
            if safe is None:
                continue
            relative = members.checked(safe.name)
            if relative is None:
                continue
            if safe.isdir():
                members.directory(relative, safe.mtime)
            elif safe.issym():
                members.symlink(relative, safe.linkname)
            else:
                with zipped.open(info) as source:
                    members.file(relative, source, safe.mode or 0o644, safe.mtime)


def _as_tar_member(zipped: zipfile.ZipFile, info: zipfile.ZipInfo) -> tarfile.TarInfo:
    """A zip member described as a tar member, so that one filter judges both."""
    name = info.filename
    if info.create_system == 0:  # made on MS-DOS/Windows: backslashes separate, as unzip reads
        name = name.replace("\\", "/")
    member = tarfile.TarInfo(name)
    mode = info.external_attr >> 16 if info.create_system == 3 else 0  # unix permissions
    member.mode = stat.S_IMODE(mode) or (0o755 if info.is_dir() else 0o644)
    member.size = info.file_size
    try:
        member.mtime = int(time.mktime((*info.date_time, 0, 0, -1)))
    except (OverflowError, ValueError):
        member.mtime = int(time.time())
    if info.is_dir():
        member.type = tarfile.DIRTYPE
    elif stat.S_ISLNK(mode):
        member.type = tarfile.SYMTYPE
        with zipped.open(info) as source:
            target = source.read(MAX_LINK_TARGET + 1)
        if len(target) > MAX_LINK_TARGET:
            raise BadRequest(f"archive member {name!r} is a link with an overlong target")
        member.linkname = target.decode("utf-8", "surrogateescape")
    elif stat.S_IFMT(mode) not in (0, stat.S_IFREG):
        member.type = tarfile.FIFOTYPE  # a device, FIFO or socket: the filter skips it
    return member


def _extract_single(archive: Path, opener: Callable[[Path], BinaryIO], members: _Members) -> None:
    members.admit()
    relative = members.checked(os.path.splitext(archive.name)[0])
    assert relative is not None  # archive_kind saw a name before the extension
    info = os.stat(archive)
    with opener(archive) as source:
        members.file(relative, source, stat.S_IMODE(info.st_mode), info.st_mtime)


@dataclass
class _Members:
    """What an archive has produced so far, in the temporary folder, within the limits."""

    job: Extraction
    root: Path
    sidecar_root: Path
    count: int = 0
    written: int = 0
    folders: set[PurePosixPath] = field(default_factory=set)
    sidecar_folders: set[PurePosixPath] = field(default_factory=set)
    folder_times: dict[PurePosixPath, float] = field(default_factory=dict)
    symlinks: list[tuple[PurePosixPath, str]] = field(default_factory=list)

    @property
    def limits(self) -> ExtractionLimits:
        return self.job.limits

    def admit(self, count: int = 1) -> None:
        self.count += count
        if self.count > self.limits.max_members:
            raise PayloadTooLarge(
                f"{self.job.archive.name} has more than {self.limits.max_members} members"
            )

    def filtered(self, member: tarfile.TarInfo) -> tarfile.TarInfo | None:
        """The member as tar's ``data`` filter allows it; None to skip it."""
        try:
            return tarfile.data_filter(member, str(self.root))
        except tarfile.SpecialFileError:
            return None
        except tarfile.FilterError as error:
            raise _refused(error) from None

    def checked(self, name: str) -> PurePosixPath | None:
        relative = _member_path(name)
        if relative is not None:
            try:
                self.job.check_name(relative)
            except BadRequest as error:
                raise BadRequest(f"archive member {name!r}: {error.reason}") from None
        return relative

    def file(self, relative: PurePosixPath, source: BinaryIO, mode: int, mtime: float) -> None:
        path = self._place_for(relative)
        stream = StreamState.fresh(self.job.digest_names)
        tail = b""
        fd = os.open(path, _NEW_FILE, 0o600)
        with open(fd, "wb", buffering=0) as out:
            while block := source.read(BLOCK):
                if self.job.stopping.is_set():
                    raise ServiceUnavailable("the server is stopping; decompress again later")
                self.written += len(block)
                if self.written > self.limits.max_bytes:
                    raise PayloadTooLarge(
                        f"{self.job.archive.name} expands to more than "
                        f"{self.limits.max_bytes} bytes"
                    )
                out.write(block)
                stream.feed_all([block])
                tail = keep_tail(tail, block)
            os.fchmod(fd, mode)
        os.utime(path, (mtime, mtime))
        info = os.stat(path)
        scan = stream.scanner.finish()
        record = metadata_record(
            user=self.job.user,
            relative=self.job.folder / relative,
            size=info.st_size,
            mtime=info.st_mtime,
            digests={name: digest.hexdigest() for name, digest in stream.digests.items()},
            scan=scan,
            tail_bytes=tail if scan.is_text else b"",
            upload_id=None,
            source=UNKNOWN_SOURCE,
        )
        self._write_sidecar(relative, record)

    def directory(self, relative: PurePosixPath, mtime: float) -> None:
        self._make_folders(relative)
        self.folder_times[relative] = mtime

    def symlink(self, relative: PurePosixPath, target: str) -> None:
        if not target:  # no link can be made to it (ENOENT)
            raise BadRequest(f"archive member {relative} is a link to nothing")
        self._make_folders(relative.parent)
        self.symlinks.append((relative, target))

    def hardlink(self, relative: PurePosixPath, existing: PurePosixPath | None) -> None:
        if existing is None:
            raise BadRequest(f"archive member {relative} links to a folder")
        path = self._place_for(relative)
        try:
            os.link(self.root / existing, path, follow_symlinks=False)
        except OSError as error:
            if error.errno not in (errno.ENOENT, errno.EPERM, errno.EISDIR):
                raise
            raise BadRequest(f"archive member {relative} links to {existing}, not a file") from None
        record = read_json_object(self.sidecar_root / existing)
        if record is not None:
            record["name"], record["path"] = (
                relative.name,
                f"{self.job.user}/{self.job.folder / relative}",
            )
            self._write_sidecar(relative, record)

    def finish(self) -> None:
        """Make the symlinks, each checked where it really leads; set folder times."""
        real_root = os.path.realpath(self.root)
        for relative, target in self.symlinks:
            path = self._place_for(relative)
            os.symlink(target, path)
        for relative, target in self.symlinks:
            resolved = os.path.realpath(self.root / relative)
            if not is_inside(resolved, real_root):
                raise _refused(f"{relative!s} is a link to {target!r}, outside the archive")
        for relative, mtime in sorted(self.folder_times.items(), reverse=True):
            with contextlib.suppress(FileNotFoundError):
                os.utime(self.root / relative, (mtime, mtime), follow_symlinks=False)

    def _place_for(self, relative: PurePosixPath) -> Path:
        """Where a new file or link goes; a file of the same name from an earlier member
        is replaced (the last one wins, as with tar), a folder is not."""
        self._make_folders(relative.parent)
        path = self.root / relative
        if relative in self.folders:
            raise BadRequest(f"archive member {relative} is both a folder and a file")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
            remove_path(self.sidecar_root / relative)
        return path

    def _make_folders(self, relative: PurePosixPath) -> None:
        """Make ``relative`` and its parents, one level at a time (any depth)."""
        missing = []
        for folder in (relative, *relative.parents):
            if folder == PurePosixPath(".") or folder in self.folders:
                break
            missing.append(folder)
        for folder in reversed(missing):
            try:
                os.mkdir(self.root / folder)
            except FileExistsError:
                if not stat.S_ISDIR(os.lstat(self.root / folder).st_mode):
                    raise BadRequest(
                        f"archive member {folder} is both a file and a folder"
                    ) from None
            self.folders.add(folder)

    def _write_sidecar(self, relative: PurePosixPath, record: dict[str, Any]) -> None:
        # No temp file or fsync: the whole folder of sidecars appears by one rename later,
        # and a sidecar lost in a crash is only recomputed.
        path = self.sidecar_root / relative
        for folder in reversed(relative.parents[:-1]):
            if folder not in self.sidecar_folders:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(self.sidecar_root / folder)
                self.sidecar_folders.add(folder)
        with open(path, "w", encoding="utf-8") as out:
            json.dump(record, out, ensure_ascii=False)


def _place(temp: Path, sidecar_temp: Path, folder: Path, sidecars: Path) -> list[str]:
    """Move the extracted top-level entries (and their sidecars) beside the archive;
    Conflict, with nothing moved, when one of them exists there already."""
    names = sorted(os.listdir(temp))
    taken = [name for name in names if os.path.lexists(folder / name)]
    if taken:
        raise Conflict(f"{taken[0]} already exists beside the archive; nothing was extracted")
    for name in names:
        try:
            move_no_replace(temp / name, folder / name)
        except FileExistsError:  # made meanwhile by someone else
            raise Conflict(f"{name} appeared beside the archive while it was extracted") from None
        move_sidecar(sidecar_temp / name, sidecars / name, sidecars)
    return names


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
