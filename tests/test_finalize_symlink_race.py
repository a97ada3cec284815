"""The final move cannot be redirected by a symlink planted after the path check.

``place_file`` checks the destination (``staged_path``), then moves the partial file. An
attacker with shell access to their own area could swap the destination's folder for a
symlink to another user's area between the two steps. The move goes through a descriptor
of the folder checked at open time, so such a swap is refused and nothing lands outside.
"""

from __future__ import annotations

import json
import os
from pathlib import Path, PurePosixPath

import pytest

from protocol.lifecycle import UploadState
from store.finalize import FinalizeBlocked, place_file
from store.layout import DataLayout
from store.partial import file_identity, partial_path
from store.paths import UnsafePath, open_dir_inside
from store.record import UploadRecord, new_upload_id


class SwapAfterCheck(DataLayout):
    """The layout with an attacker's move right after each destination check."""

    def staged_path(self, user: str, relative: PurePosixPath | str) -> Path:
        path = super().staged_path(user, relative)
        folder = path.parent
        folder.rename(folder.with_name(folder.name + ".moved"))
        folder.symlink_to(self.staging_dir / "bob")
        return path


def finalizing_record(layout: DataLayout, destination: str, data: bytes) -> UploadRecord:
    record = UploadRecord(
        id=new_upload_id(), owner="alice", length=len(data), offset=len(data),
        metadata="", destination=destination, status=UploadState.FINALIZING,
        result=json.dumps({"size": len(data)}).encode(),
    )  # fmt: skip
    partial = partial_path(layout.upload_dir, record.id)
    partial.write_bytes(data)
    record.partial_identity = file_identity(partial)
    return record


def make_layout(cls: type[DataLayout], tmp_path: Path) -> DataLayout:
    layout = cls.under(tmp_path)
    layout.create_dirs()
    for user in ("alice", "bob"):
        (layout.staging_dir / user).mkdir()
    return layout


def test_a_folder_swapped_for_a_symlink_after_the_check_is_refused(tmp_path: Path) -> None:
    layout = make_layout(SwapAfterCheck, tmp_path)
    (layout.staging_dir / "alice" / "results").mkdir()
    record = finalizing_record(layout, "results/out.txt", b"secret\n")
    with pytest.raises(FinalizeBlocked, match="outside your area"):
        place_file(record, layout)
    assert list((layout.staging_dir / "bob").iterdir()) == []  # nothing landed in bob's area
    assert partial_path(layout.upload_dir, record.id).read_bytes() == b"secret\n"


def test_a_symlink_inside_the_area_is_still_followed(tmp_path: Path) -> None:
    layout = make_layout(DataLayout, tmp_path)
    home = layout.staging_dir / "alice"
    (home / "real").mkdir()
    (home / "link").symlink_to(home / "real")
    record = finalizing_record(layout, "link/out.txt", b"hello\n")
    place_file(record, layout)
    assert (home / "real" / "out.txt").read_bytes() == b"hello\n"
    sidecar = json.loads((layout.metadata_dir / "alice" / "link" / "out.txt").read_text())
    assert sidecar["size"] == 6 and sidecar["mtime"] > 0


def test_open_dir_inside_refuses_a_folder_reached_through_an_outside_link(
    tmp_path: Path,
) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "away").symlink_to(outside)
    with pytest.raises(UnsafePath):
        open_dir_inside(root, root / "away")
    fd = open_dir_inside(root, root)
    os.close(fd)
