"""The client's pure parts: paths in the area, one level of a listing, request bodies read
from files, partial downloads, sizes and the summary line."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
from fractions import Fraction
from pathlib import Path, PurePosixPath

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tus_staging.cli import build_parser
from tus_staging.client_http import ServerError, is_transient
from tus_staging.download_command import PartialFile, local_target, resumable_offset
from tus_staging.progress import Progress, human_bytes
from tus_staging.staging_client import area_path, direct_children
from tus_staging.tus_client import BLOCK, Cancelled, FileChanged, FileRange, sha1_of_range
from tus_staging.upload_command import FileJob, FileResult, files_to_upload, summary

segment = st.text(
    st.characters(blacklist_characters="/\x00", blacklist_categories=("Cs",)), min_size=1
).filter(lambda s: s not in (".", ".."))
tree_paths = st.sets(st.lists(st.sampled_from("abc"), min_size=1, max_size=4).map(tuple))


@given(st.lists(segment, max_size=5), st.booleans(), st.booleans(), st.booleans())
def test_area_path_normalizes_slashes_and_dots(
    parts: list[str], leading: bool, trailing: bool, dot: bool
) -> None:
    text = "/" * leading + "/".join(["."] * dot + parts) + "/" * trailing
    assert area_path(text) == "/".join(parts)


@given(st.lists(segment, max_size=3), st.lists(segment, max_size=3))
def test_area_path_refuses_parent_references(before: list[str], after: list[str]) -> None:
    with pytest.raises(ValueError, match=r"cannot contain '\.\.'"):
        area_path("/".join([*before, "..", *after]))


@given(tree_paths, st.data())
def test_direct_children_of_a_recursive_listing(paths: set[tuple[str, ...]], data) -> None:
    folders = sorted({p[:i] for p in paths for i in range(len(p))} | {()})
    folder = data.draw(st.sampled_from(folders))  # () is the home
    nodes = paths | set(folders)
    listing = [{"name": (p or ("alice",))[-1], "path": "/".join(("alice", *p))} for p in nodes]
    children = direct_children(listing, "/".join(folder))
    assert sorted(e["path"] for e in children) == sorted(
        "/".join(("alice", *p)) for p in nodes if len(p) == len(folder) + 1 and p[:-1] == folder
    )


def test_local_target(tmp_path: Path) -> None:
    assert local_target("run7/reads.bin", None) == Path("reads.bin")
    assert local_target("run7/reads.bin", str(tmp_path)) == tmp_path / "reads.bin"
    assert local_target("reads.bin", str(tmp_path / "new") + "/") == tmp_path / "new" / "reads.bin"
    assert local_target("reads.bin", str(tmp_path / "copy")) == tmp_path / "copy"


@given(st.binary(max_size=3 * BLOCK // 2), st.data())
def test_file_range_sends_exactly_its_bytes(content: bytes, data) -> None:
    offset = data.draw(st.integers(0, len(content)))
    length = data.draw(st.integers(0, len(content) - offset))
    sent: list[int] = []
    with open(os.memfd_create("range"), "w+b") as handle:  # a file without a folder
        handle.write(content)
        handle.flush()
        body = FileRange(handle.fileno(), offset, length, sent.append, lambda: False)
        assert len(body) == length
        assert b"".join(body) == content[offset : offset + length]
        assert sum(sent) == length and all(count <= BLOCK for count in sent)
        expected = base64.b64encode(hashlib.sha1(content[offset : offset + length]).digest())
        assert sha1_of_range(handle.fileno(), offset, length) == "sha1 " + expected.decode()


def test_file_range_stops_when_cancelled_or_the_file_shrank(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * (2 * BLOCK))
    with open(path, "rb") as handle:
        cancelled = FileRange(handle.fileno(), 0, 2 * BLOCK, lambda n: None, lambda: True)
        with pytest.raises(Cancelled):
            next(iter(cancelled))
        os.truncate(path, BLOCK + 10)
        shrunk = FileRange(handle.fileno(), 0, 2 * BLOCK, lambda n: None, lambda: False)
        with pytest.raises(FileChanged, match=f"shrank to {BLOCK + 10} bytes"):
            b"".join(shrunk)


@given(st.binary(max_size=5000), st.lists(st.binary(max_size=3000), max_size=4), st.data())
def test_partial_file_md5_covers_the_kept_part_and_the_new_blocks(
    earlier: bytes, blocks: list[bytes], data
) -> None:
    kept = data.draw(st.integers(0, len(earlier)))
    handle = io.BytesIO(earlier)  # what an earlier run left, possibly beyond what is kept
    partial = PartialFile(handle, kept, Progress(0, io.StringIO()).file("f", 0, 0, False))
    for block in blocks:
        partial.append(block)
    whole = earlier[:kept] + b"".join(blocks)
    assert (handle.getvalue(), partial.offset) == (whole, len(whole))
    assert partial.digest.hexdigest() == hashlib.md5(whole).hexdigest()
    partial.restart()
    partial.append(b"new")
    assert (
        handle.getvalue() == b"new"
        and partial.digest.hexdigest() == hashlib.md5(b"new").hexdigest()
    )


def test_a_partial_file_is_kept_only_for_the_same_remote_file(tmp_path: Path) -> None:
    partial = tmp_path / "x.part"
    same = {"size": 10, "mtime": 5, "md5": "a" * 32}
    assert resumable_offset(partial, same, same) == 0  # nothing on disk
    partial.write_bytes(b"1234")
    assert resumable_offset(partial, same, same) == 4
    assert resumable_offset(partial, None, same) == 0  # nothing remembered of it
    assert resumable_offset(partial, {**same, "md5": "b" * 32}, same) == 0
    assert resumable_offset(partial, {**same, "size": 3}, {**same, "size": 3}) == 0  # too long


@given(st.integers(0, 2**60))
def test_human_bytes_reads_back(count: int) -> None:
    value, unit = human_bytes(count).split()
    scale = 1024 ** ["B", "KiB", "MiB", "GiB", "TiB", "PiB"].index(unit)
    assert float(value) < 1024 or unit == "PiB"
    # Exact arithmetic: 1280 B is 1.25 KiB, printed 1.2, exactly half a last digit off.
    assert abs(Fraction(value) * scale - count) <= Fraction(1, 20) * scale


@given(st.lists(st.tuples(st.integers(0, 10**9), st.integers(0, 10**9), st.booleans())))
def test_summary_counts(files: list[tuple[int, int, bool]]) -> None:
    results = []
    for index, (size, resumed, failed) in enumerate(files):
        job = FileJob(Path(f"/f{index}"), PurePosixPath("."), size, 0)
        results.append(FileResult(job, min(resumed, size), "refused" if failed else None))
    line = summary(results, 2.0)
    done = [r for r in results if r.error is None]
    sent = sum(r.job.size - r.resumed_from for r in done)
    match = re.fullmatch(
        r"(\d+) files?, .* in 2\.0 s, ([\d.]+) MB/s, (\d+) resumed(, (\d+) failed)?", line
    )
    assert match, line
    assert int(match[1]) == len(done)
    assert float(match[2]) == pytest.approx(sent / 2e6, abs=0.051)
    assert int(match[3]) == sum(1 for r in done if r.resumed_from)
    assert int(match[5] or 0) == len(results) - len(done)


def test_files_to_upload_keeps_the_folder_structure(tmp_path: Path) -> None:
    (tmp_path / "run7" / "raw").mkdir(parents=True)
    for name in ("run7/a.txt", "run7/raw/b.bin", "single.txt"):
        (tmp_path / name).write_text(name)
    jobs = files_to_upload([tmp_path / "run7", tmp_path / "single.txt"], "/in/box/")
    assert [(job.local, job.destination) for job in jobs] == [
        (tmp_path / "run7" / "a.txt", "in/box/run7/a.txt"),
        (tmp_path / "run7" / "raw" / "b.bin", "in/box/run7/raw/b.bin"),
        (tmp_path / "single.txt", "in/box/single.txt"),
    ]
    assert jobs[1].metadata == {"filename": "b.bin", "destPath": "in/box/run7/raw"}
    assert files_to_upload([tmp_path / "single.txt"], "")[0].metadata == {"filename": "single.txt"}
    with pytest.raises(ValueError, match=r"would both be uploaded to single\.txt"):
        files_to_upload([tmp_path / "single.txt", tmp_path / "single.txt"], "")
    with pytest.raises(FileNotFoundError):
        files_to_upload([tmp_path / "nothing"], "")


@pytest.mark.parametrize(
    ("error", "transient"),
    [(ServerError(None, "cannot reach", unreachable=True), True), (ServerError(423, "busy"), True),
     (ServerError(503, "redis"), True), (ServerError(409, "offset"), False),
     (ServerError(404, "gone"), False), (ServerError(None, "nonsense answer"), False),
     (OSError("disk"), False)],
)  # fmt: skip
def test_what_is_worth_another_try(error: BaseException, transient: bool) -> None:
    assert is_transient(error) == transient


@pytest.mark.parametrize("command", [[], ["upload"], ["ls"], ["info"], ["get"], ["mv"], ["rm"],
                                     ["mkdir"]])  # fmt: skip
def test_help_is_plain_text_with_examples(command: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args([*command, "--help"])
    text = capsys.readouterr().out
    assert done.value.code == 0
    assert "``" not in text and ":func:" not in text and "\n\n\n" not in text
    assert "\nexamples:\n  " in text
    assert ("exit status: 0 done; 1 failed" in text) == bool(command)
