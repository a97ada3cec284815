"""Archive extraction (store/archive.py), in process: every format, and every unsafe
archive contained — nothing outside the archive's folder, nothing half-extracted."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import json
import os
import stat
import tarfile
import threading
import time
import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    PayloadTooLarge,
    ServiceUnavailable,
    TusError,
)
from store.archive import Extraction, ExtractionLimits, archive_kind, clear_leftovers, extract
from tus_staging.staging_paths import new_name

MiB = 1024 * 1024
MTIME = 1_600_000_000
TEXT = "".join(f"line {i} é\n" for i in range(300)).encode()
BINARY = bytes(range(256)) * 40 + b"\n\n"
FILES = {"top.txt": TEXT, "dir/inner.bin": BINARY, "dir/sub/empty.txt": b""}


class Area:
    """A user's home and sidecar folder in a temp dir, with an archive folder inside."""

    def __init__(self, root: Path, folder: str = "in"):
        self.home = root / "staging" / "alice"
        self.meta = root / "metadata" / "alice"
        self.outside = root / "staging" / "outside"
        self.folder = PurePosixPath(folder)
        for path in (self.home / folder, self.meta / folder, self.outside):
            path.mkdir(parents=True, exist_ok=True)
        (self.outside / "keep.txt").write_bytes(b"keep")

    @property
    def dest(self) -> Path:
        return self.home / self.folder

    def write(self, name: str, data: bytes) -> Path:
        path = self.dest / name
        path.write_bytes(data)
        return path

    def extract(
        self,
        name: str,
        max_bytes: int = 64 * MiB,
        max_members: int = 1000,
        stopping: threading.Event | None = None,
    ) -> list[str]:
        job = Extraction(
            archive=self.dest / name,
            sidecars=self.meta / self.folder,
            metadata_home=self.meta,
            user="alice",
            folder=self.folder,
            digest_names=["md5"],
            limits=ExtractionLimits(max_bytes, max_members),
            check_name=lambda member: new_name(self.folder / member, field="name"),
            stopping=stopping or threading.Event(),
        )
        return extract(job)

    def tree(self) -> dict[str, bytes | None]:
        """Everything beside the archive: files with their bytes, folders as None."""
        found: dict[str, bytes | None] = {}
        for path in sorted(self.dest.rglob("*")):
            relative = path.relative_to(self.dest).as_posix()
            if path.is_symlink():
                found[relative] = f"-> {os.readlink(path)}".encode()
            elif path.is_dir():
                found[relative] = None
            else:
                found[relative] = path.read_bytes()
        return found

    def untouched(self, *archives: str) -> None:
        """Nothing was extracted, no temporary folder is left, nothing outside changed."""
        assert sorted(self.tree()) == sorted(archives)
        assert not any(self.meta.rglob(".decompress-*"))
        assert sorted(p.name for p in self.outside.iterdir()) == ["keep.txt"]
        assert (self.outside / "keep.txt").read_bytes() == b"keep"


@pytest.fixture
def area(tmp_path: Path) -> Area:
    return Area(tmp_path)


def tar_bytes(members: list[tuple[tarfile.TarInfo, bytes | None]], mode: str = "w") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "", mode: int = 0o644):
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode, info.mtime = kind, link, mode, MTIME
    return info


def files_tar(mode: str = "w") -> bytes:
    members: list[tuple[tarfile.TarInfo, bytes | None]] = [
        (member("dir", tarfile.DIRTYPE, mode=0o755), None),
        (member("dir/sub", tarfile.DIRTYPE, mode=0o755), None),
    ]
    members += [(member(name), data) for name, data in FILES.items()]
    return tar_bytes(members, mode)


def files_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zipped:
        zipped.writestr(zipfile.ZipInfo("dir/sub/", time.localtime(MTIME)[:6]), b"")
        for name, data in FILES.items():
            info = zipfile.ZipInfo(name, time.localtime(MTIME)[:6])
            info.external_attr = (stat.S_IFREG | 0o644) << 16
            info.create_system = 3
            zipped.writestr(info, data, zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


ARCHIVES: dict[str, Callable[[], bytes]] = {
    "files.zip": files_zip,
    "files.ZIP": files_zip,
    "files.tar": files_tar,
    "files.tar.gz": lambda: files_tar("w:gz"),
    "files.tgz": lambda: files_tar("w:gz"),
    "files.tar.bz2": lambda: files_tar("w:bz2"),
    "files.tar.bz": lambda: files_tar("w:bz2"),
}


@pytest.mark.parametrize("name", sorted(ARCHIVES))
def test_each_format_gives_the_same_tree_with_sidecars(area: Area, name: str) -> None:
    area.write(name, ARCHIVES[name]())
    assert area.extract(name) == ["dir", "top.txt"]
    tree = area.tree()
    assert tree == {name: tree[name], "dir": None, "dir/sub": None, **FILES}
    for relative, data in FILES.items():
        path = area.dest / relative
        assert int(path.stat().st_mtime) == MTIME  # the archive's times, as tar and unzip
        sidecar = json.loads((area.meta / "in" / relative).read_text())
        lines = sum(1 for _ in io.BytesIO(data))
        assert sidecar["md5"] == hashlib.md5(data).hexdigest()
        assert sidecar["lineCount"] == str(lines)
        assert sidecar["size"] == len(data)
        assert sidecar["mtime"] == int(path.stat().st_mtime * 1000)
        assert sidecar["path"] == f"alice/in/{relative}" and sidecar["source"] == "Unknown"
    top = json.loads((area.meta / "in" / "top.txt").read_text())
    assert top["isText"] and top["head"] == TEXT.decode()[:1024]
    assert top["tail"] == TEXT.decode()[-1024:]
    inner = json.loads((area.meta / "in" / "dir" / "inner.bin").read_text())
    assert not inner["isText"] and inner["head"] == inner["tail"] == "not text file"
    assert not any(area.meta.rglob(".decompress-*"))


@pytest.mark.parametrize(
    ("name", "compress"), [("reads.fq.gz", gzip.compress), ("r.fq.bz2", bz2.compress)]
)
def test_single_file_replaces_the_archive(area: Area, name: str, compress) -> None:
    archive = area.write(name, compress(TEXT))
    os.utime(archive, (MTIME, MTIME))
    sidecar = area.meta / "in" / name
    sidecar.write_text("{}")  # the archive's own sidecar goes with it
    output = name.rsplit(".", 1)[0]
    assert area.extract(name) == [output]
    assert area.tree() == {output: TEXT}
    assert int((area.dest / output).stat().st_mtime) == MTIME
    record = json.loads((area.meta / "in" / output).read_text())
    assert record["md5"] == hashlib.md5(TEXT).hexdigest() and record["lineCount"] == "300"
    assert not sidecar.exists()


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("a.zip", "zip"), ("a.ZIP", "zip"), ("a.tar", "tar"), ("a.tar.gz", "tar.gz"),
        ("a.tgz", "tar.gz"), ("a.tar.bz2", "tar.bz2"), ("a.tar.bz", "tar.bz2"), ("a.gz", "gz"),
        ("a.bz2", "bz2"), ("x.y.tar.gz", "tar.gz"),
    ],
)  # fmt: skip
def test_archive_kinds(name: str, kind: str) -> None:
    assert archive_kind(name)[0] == kind


@pytest.mark.parametrize(
    ("name", "extension"),
    [("a.rar", ".rar"), ("a.TAR.GZ", ".GZ"), ("a.Zip", ".Zip"), ("noext", ""), (".gz", ""),
     ("a.bz", ".bz"), ("a.7z", ".7z")],
)  # fmt: skip
def test_other_names_cannot_be_decompressed(name: str, extension: str) -> None:
    with pytest.raises(BadRequest) as refused:
        archive_kind(name)
    assert refused.value.reason == f"cannot decompress a {extension} file"


def refused(area: Area, name: str, data: bytes, error: type[TusError] = BadRequest) -> str:
    area.write(name, data)
    with pytest.raises(error) as caught:
        area.extract(name, max_bytes=4 * MiB, max_members=50)
    area.untouched(name)
    (area.dest / name).unlink()
    return caught.value.reason


def test_zip_slip_is_refused(area: Area) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zipped:
        zipped.writestr("fine.txt", b"fine")
        zipped.writestr("../outside/evil.txt", b"evil")
    assert "../outside/evil.txt" in refused(area, "slip.zip", buffer.getvalue())
    data = tar_bytes([(member("fine.txt"), b"f"), (member("a/../../outside/evil"), b"e")])
    refused(area, "slip.tar", data)


def test_absolute_names_land_inside(area: Area) -> None:
    data = tar_bytes([(member("/outside/abs.txt"), b"abs"), (member("//etc/x"), b"x")])
    area.write("abs.tar", data)
    area.extract("abs.tar")
    assert area.tree()["outside/abs.txt"] == b"abs" and area.tree()["etc/x"] == b"x"
    area.untouched("abs.tar", "outside", "outside/abs.txt", "etc", "etc/x")


@pytest.mark.parametrize(
    "links",
    [
        [("out", "../outside")],  # relative, out of the archive's folder
        [("out", "/etc/passwd")],  # absolute
        [("deep/out", "../../../outside/keep.txt")],
        # A chain in which each link alone looks inside: resolved, the last leads out.
        [("y", "."), ("x", "y/y/y/..")],
        [("a", "b"), ("b", "..")],
    ],
)
def test_symlinks_out_are_refused(area: Area, links: list[tuple[str, str]]) -> None:
    members = [(member("deep", tarfile.DIRTYPE), None)] + [
        (member(name, tarfile.SYMTYPE, target), None) for name, target in links
    ]
    refused(area, "links.tar", tar_bytes(members))


def test_a_link_to_nothing_is_refused(area: Area) -> None:
    # A symlink with an empty target cannot be made (ENOENT): tar reports it and goes on.
    refused(area, "empty.tar", tar_bytes([(member("empty", tarfile.SYMTYPE, ""), None)]))
    assert "a link to nothing" in refused(area, "empty2.tar", tar_bytes(
        [(member("f"), b"x"), (member("d/empty", tarfile.SYMTYPE, ""), None)]
    ))  # fmt: skip


def test_symlinks_inside_are_made_after_the_files(area: Area) -> None:
    members = [
        (member("data", tarfile.DIRTYPE), None),
        (member("latest", tarfile.SYMTYPE, "data"), None),
        (member("data/file.txt"), b"content"),
        (member("data/up", tarfile.SYMTYPE, ".."), None),  # the archive's folder: inside
    ]
    area.write("ok.tar", tar_bytes(members))
    area.extract("ok.tar")
    assert (area.dest / "latest").is_symlink() and os.readlink(area.dest / "latest") == "data"
    assert (area.dest / "latest" / "file.txt").read_bytes() == b"content"


def test_zip_symlinks(area: Area) -> None:
    def link_zip(target: str) -> bytes:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as zipped:
            zipped.writestr("file.txt", b"f")
            info = zipfile.ZipInfo("link")
            info.create_system = 3
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zipped.writestr(info, target.encode())
        return buffer.getvalue()

    refused(area, "out.zip", link_zip("../outside/keep.txt"))
    refused(area, "abs.zip", link_zip("/etc/passwd"))
    area.write("in.zip", link_zip("file.txt"))
    area.extract("in.zip")
    assert os.readlink(area.dest / "link") == "file.txt"


def test_hard_links(area: Area) -> None:
    refused(
        area, "out.tar", tar_bytes([(member("h", tarfile.LNKTYPE, "../outside/keep.txt"), None)])
    )
    refused(area, "abs.tar", tar_bytes([(member("h", tarfile.LNKTYPE, "/etc/passwd"), None)]))
    members = [
        (member("orig.txt"), b"same bytes\n"),
        (member("copy.txt", tarfile.LNKTYPE, "orig.txt"), None),
    ]
    area.write("in.tar", tar_bytes(members))
    area.extract("in.tar")
    assert (area.dest / "copy.txt").stat().st_ino == (area.dest / "orig.txt").stat().st_ino
    record = json.loads((area.meta / "in" / "copy.txt").read_text())
    assert record["md5"] == hashlib.md5(b"same bytes\n").hexdigest()
    assert record["path"] == "alice/in/copy.txt"


def test_devices_and_fifos_are_skipped(area: Area) -> None:
    members = [
        (member("dev", tarfile.CHRTYPE), None),
        (member("blk", tarfile.BLKTYPE), None),
        (member("fifo", tarfile.FIFOTYPE), None),
        (member("file.txt"), b"kept"),
    ]
    area.write("special.tar", tar_bytes(members))
    area.extract("special.tar")
    assert area.tree() == {"special.tar": area.tree()["special.tar"], "file.txt": b"kept"}


def test_modes_lose_set_id_and_group_write(area: Area) -> None:
    members = [(member("tool", mode=0o6777), b"#!/bin/sh\n"), (member("plain", mode=0o600), b"p")]
    area.write("modes.tar", tar_bytes(members))
    area.extract("modes.tar")
    assert stat.S_IMODE((area.dest / "tool").stat().st_mode) == 0o755
    assert stat.S_IMODE((area.dest / "plain").stat().st_mode) == 0o600


def zeros_zip(size: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zipped:
        zipped.writestr("small.txt", b"small")
        zipped.writestr("zeros.bin", bytes(size))
    return buffer.getvalue()


def test_bombs_are_refused_with_nothing_left(area: Area) -> None:
    bomb = zeros_zip(16 * MiB)
    assert len(bomb) < 100_000
    assert "more than 4194304 bytes" in refused(area, "bomb.zip", bomb, PayloadTooLarge)
    big = tar_bytes([(member("zeros"), bytes(16 * MiB))], "w:gz")
    refused(area, "bomb.tar.gz", big, PayloadTooLarge)
    refused(area, "bomb.gz", gzip.compress(bytes(16 * MiB)), PayloadTooLarge)
    refused(area, "bomb.bz2", bz2.compress(bytes(16 * MiB)), PayloadTooLarge)


def test_member_count_is_bounded(area: Area) -> None:
    many = tar_bytes([(member(f"f{i}"), b"") for i in range(51)])
    assert "more than 50 members" in refused(area, "many.tar", many, PayloadTooLarge)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zipped:
        for i in range(51):
            zipped.writestr(f"f{i}", b"")
    refused(area, "many.zip", buffer.getvalue(), PayloadTooLarge)


def test_a_clash_moves_nothing(area: Area) -> None:
    area.write("top.txt", b"mine")
    area.write("files.zip", files_zip())
    with pytest.raises(Conflict):
        area.extract("files.zip")
    assert sorted(area.tree()) == ["files.zip", "top.txt"]
    assert (area.dest / "top.txt").read_bytes() == b"mine"


@pytest.mark.parametrize(
    "name",
    [
        "broken.zip",
        "broken.tar",
        "broken.tar.gz",
        "broken.tgz",
        "broken.tar.bz2",
        "broken.gz",
        "broken.bz2",
    ],
)
def test_broken_archives_are_400(area: Area, name: str) -> None:
    reason = refused(area, name, os.urandom(3000))
    assert reason.startswith(f"{name} is not a")


def test_truncated_archives_are_400(area: Area) -> None:
    refused(area, "cut.tar.gz", files_tar("w:gz")[:-200])
    refused(area, "cut.zip", files_zip()[:-30])
    refused(area, "cut.gz", gzip.compress(TEXT)[:-10])


def test_names_follow_the_area_rules(area: Area) -> None:
    for bad in (" lead.txt", "ctl\x01.txt", "back\\slash", "a/\u2028/b", "x" * 256):
        assert "archive member" in refused(area, "bad.tar", tar_bytes([(member(bad), b"x")]))
    # Made on Windows: backslashes separate folders, as unzip reads them.
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zipped:
        info = zipfile.ZipInfo("win\\folder\\file.txt")
        info.create_system = 0
        zipped.writestr(info, b"w")
    area.write("win.zip", buffer.getvalue())
    area.extract("win.zip")
    assert area.tree()["win/folder/file.txt"] == b"w"


def test_the_globus_link_file_cannot_come_from_an_archive(tmp_path: Path) -> None:
    home = Area(tmp_path, ".")
    home.write("g.tar", tar_bytes([(member(".globus_id"), b"someone-else@globusid.org")]))
    with pytest.raises(Forbidden):
        home.extract("g.tar")
    assert not (home.home / ".globus_id").exists()


def test_encrypted_zip_members_are_400(area: Area) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zipped:
        zipped.writestr("secret.txt", b"not really encrypted")
    # zipfile writes no encrypted members: set the flag in both headers by hand.
    data = bytearray(buffer.getvalue())
    for signature, flags_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        data[data.index(signature) + flags_at] |= 0x1
    assert "encrypted" in refused(area, "enc.zip", bytes(data))


def test_duplicate_members_last_one_wins(area: Area) -> None:
    data = tar_bytes([(member("same.txt"), b"first"), (member("same.txt"), b"second")])
    area.write("dup.tar", data)
    area.extract("dup.tar")
    assert (area.dest / "same.txt").read_bytes() == b"second"
    record = json.loads((area.meta / "in" / "same.txt").read_text())
    assert record["md5"] == hashlib.md5(b"second").hexdigest()


PIECES = st.sampled_from(
    ["..", ".", "", "a", "b", "/", "\\", " ", "x y", "\x00", "\x1f", "é", "\u202e", "~", "-"]
)
NAMES = st.lists(st.one_of(PIECES, st.text(max_size=4)), min_size=1, max_size=5).map("/".join)
KINDS = st.sampled_from([tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE])


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(entries=st.lists(st.tuples(NAMES, KINDS, NAMES), min_size=1, max_size=6))
def test_any_tar_lands_inside_or_is_refused(tmp_path_factory, entries) -> None:
    area = Area(tmp_path_factory.mktemp("area"))
    members = []
    for name, kind, target in entries:
        info = member(name.replace("\x00", ""), kind, target.replace("\x00", ""))
        members.append((info, b"data" if kind == tarfile.REGTYPE else None))
    area.write("any.tar", tar_bytes(members))
    try:
        area.extract("any.tar")
    except (BadRequest, Forbidden, Conflict):
        area.untouched("any.tar")
        return
    real_dest = os.path.realpath(area.dest)
    for path in area.dest.rglob("*"):
        assert (
            os.path.realpath(path).startswith(real_dest + os.sep)
            or os.path.realpath(path) == real_dest
        )
    area.untouched(*area.tree())


def test_a_stopping_server_leaves_nothing_half_extracted(area: Area) -> None:
    area.write("files.tar", files_tar())
    stopping = threading.Event()
    stopping.set()
    with pytest.raises(ServiceUnavailable):
        area.extract("files.tar", stopping=stopping)
    area.untouched("files.tar")


def leftover(parent: Path, name: str, age: float, inner_age: float | None = None) -> Path:
    """A temporary folder as a killed extraction leaves it: a half-written file inside,
    nothing written for ``age`` seconds (the file: ``inner_age``)."""
    folder = parent / name
    (folder / "dir").mkdir(parents=True)
    (folder / "dir" / "half.bin").write_bytes(b"half")
    now = time.time()
    for path in (folder / "dir" / "half.bin", folder / "dir", folder):
        at = now - (inner_age if inner_age is not None and path.is_file() else age)
        os.utime(path, (at, at))
    return folder


def test_what_a_killed_extraction_left_goes_at_the_next_one_in_that_folder(area: Area) -> None:
    hour = 3600.0
    dead = leftover(area.dest, ".decompress-k1ll3d_0.tmp", hour)
    dead_sidecars = leftover(area.meta / "in", ".decompress-k1ll3d_0.tmp", hour)
    orphan_sidecars = leftover(area.meta / "in", ".decompress-0rphan00.tmp", hour)
    live = leftover(area.dest, ".decompress-l1ve0000.tmp", 1.0)  # another worker's, writing
    writing = leftover(area.dest, ".decompress-wr1t1ng0.tmp", hour, inner_age=1.0)
    users_own = leftover(area.dest, ".decompress-mine.tmp", hour)  # not a name we make
    area.write("files.tar", files_tar())
    assert area.extract("files.tar") == ["dir", "top.txt"]
    assert not dead.exists() and not dead_sidecars.exists() and not orphan_sidecars.exists()
    assert live.exists() and writing.exists() and users_own.exists()


def test_a_leftover_is_judged_by_what_is_in_it_and_links_are_not_followed(
    area: Area, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("keep")
    os.symlink(elsewhere, area.dest / ".decompress-l1nk0000.tmp")
    old = time.time() - 7200
    dead = leftover(area.dest, ".decompress-0ld00000.tmp", 7200)
    os.symlink(elsewhere, dead / "dir" / "link")
    os.utime(dead / "dir" / "link", (old, old), follow_symlinks=False)
    os.utime(dead / "dir", (old, old))
    clear_leftovers(area.dest, area.meta / "in", time.time())
    assert not dead.exists()
    assert (area.dest / ".decompress-l1nk0000.tmp").is_symlink()
    assert (elsewhere / "keep.txt").read_text() == "keep"


def test_a_stale_sidecar_in_the_way_is_cleared(area: Area) -> None:
    (area.meta / "in").rmdir()
    (area.meta / "in").write_text('{"md5": "a sidecar file where a folder of them goes"}')
    area.write("files.tar", files_tar())
    assert area.extract("files.tar") == ["dir", "top.txt"]
    assert json.loads((area.meta / "in" / "top.txt").read_text())["size"] == len(TEXT)
