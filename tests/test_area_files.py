"""Tree removal, moves and sidecar moves in a user's area (store/area_files.py), in
process: any depth, links never followed, entries vanishing or appearing meanwhile."""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

import pytest

from store.area_files import (
    MoveIntoItself,
    TreeChanged,
    move_entry,
    move_sidecar,
    remove_path,
    replace_file_contents,
)


def make_deep(top: Path, depth: int) -> None:
    """``top/d/d/.../d/bottom.txt``, made one level at a time through descriptors."""
    top.mkdir()
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            os.mkdir("d", dir_fd=fd)
            deeper = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = deeper
        os.close(os.open("bottom.txt", os.O_CREAT | os.O_WRONLY, dir_fd=fd))
    finally:
        os.close(fd)


def test_remove_files_links_and_trees(tmp_path: Path) -> None:
    keep = tmp_path / "keep"
    keep.mkdir()
    (keep / "k.txt").write_bytes(b"k")
    tree = tmp_path / "tree"
    (tree / "a" / "b").mkdir(parents=True)
    (tree / "a" / "b" / "f.txt").write_bytes(b"f")
    os.symlink(keep, tree / "a" / "to-keep")  # a link: removed, never followed
    os.symlink(keep / "k.txt", tree / "file-link")
    os.symlink(tmp_path / "nowhere", tree / "dangling")
    os.mkfifo(tree / "fifo")
    assert remove_path(tree) is True
    assert not tree.exists()
    assert (keep / "k.txt").read_bytes() == b"k"
    assert remove_path(tree) is False
    os.symlink(keep, tmp_path / "top-link")
    assert remove_path(tmp_path / "top-link") is True
    assert (keep / "k.txt").exists()


def test_remove_a_tree_deeper_than_the_recursion_limit(tmp_path: Path) -> None:
    make_deep(tmp_path / "deep", 1200)
    before = len(os.listdir(f"/proc/{os.getpid()}/fd"))
    assert remove_path(tmp_path / "deep") is True
    assert not (tmp_path / "deep").exists()
    assert len(os.listdir(f"/proc/{os.getpid()}/fd")) == before  # no descriptor left open


def test_remove_while_a_writer_fills_the_tree(tmp_path: Path) -> None:
    """Entries appear and vanish under the removal: it finishes, or says TreeChanged;
    nothing beside the tree is touched."""
    keep = tmp_path / "keep"
    keep.mkdir()
    (keep / "k.txt").write_bytes(b"k")
    outcomes = []
    for round_ in range(5):
        tree = tmp_path / f"tree{round_}"
        for i in range(20):
            (tree / f"sub{i}").mkdir(parents=True)
            (tree / f"sub{i}" / "f").write_bytes(b"f")
        stop = threading.Event()

        def writer(tree: Path = tree, stop: threading.Event = stop) -> None:
            for n in range(400):
                if stop.is_set():
                    return
                with contextlib.suppress(OSError):  # the folder went away meanwhile: fine
                    (tree / f"sub{n % 20}" / f"new{n}").mkdir()
                    (tree / f"late{n}").write_bytes(b"x")

        thread = threading.Thread(target=writer)
        thread.start()
        try:
            remove_path(tree)
            outcomes.append("removed")
        except TreeChanged:
            outcomes.append("changed")
        finally:
            stop.set()
            thread.join()
        remove_path(tree)  # whatever the writer left after the first pass
        assert not tree.exists()
    assert (keep / "k.txt").read_bytes() == b"k"
    assert set(outcomes) <= {"removed", "changed"}


def test_a_folder_moved_away_during_removal_is_noticed(tmp_path: Path) -> None:
    """A folder renamed out of the tree while the removal is inside it: the removal stops
    (TreeChanged) rather than climb into the new parent and remove ITS folder of the same
    name, or it finishes first."""
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "d").mkdir(parents=True)
    (elsewhere / "d" / "sentinel").write_bytes(b"s")
    for round_ in range(10):
        tree = tmp_path / f"tree{round_}"
        make_deep(tree, 100)
        moved = elsewhere / f"moved{round_}"
        thread = threading.Thread(target=_try_rename, args=(tree / "d", moved))
        thread.start()
        with contextlib.suppress(TreeChanged):
            remove_path(tree)
        thread.join()
        assert (elsewhere / "d" / "sentinel").read_bytes() == b"s"


def _try_rename(source: Path, target: Path) -> None:
    with contextlib.suppress(OSError):
        os.rename(source, target)


def test_move_entry(tmp_path: Path) -> None:
    (tmp_path / "dir" / "inner").mkdir(parents=True)
    (tmp_path / "f.txt").write_bytes(b"f")
    (tmp_path / "taken").write_bytes(b"t")
    with pytest.raises(FileNotFoundError):
        move_entry(tmp_path / "none", tmp_path / "x")
    with pytest.raises(NotADirectoryError):
        move_entry(tmp_path / "f.txt", tmp_path / "missing" / "f.txt")
    with pytest.raises(NotADirectoryError):
        move_entry(tmp_path / "f.txt", tmp_path / "taken" / "f.txt")
    with pytest.raises(FileExistsError):
        move_entry(tmp_path / "f.txt", tmp_path / "taken")
    with pytest.raises(MoveIntoItself):
        move_entry(tmp_path / "dir", tmp_path / "dir" / "inner" / "dir")
    os.symlink(tmp_path / "dir" / "inner", tmp_path / "shortcut")
    with pytest.raises(MoveIntoItself):
        move_entry(tmp_path / "dir", tmp_path / "shortcut" / "dir")
    move_entry(tmp_path / "shortcut", tmp_path / "dir" / "inner" / "link")  # a link moves
    move_entry(tmp_path / "f.txt", tmp_path / "dir" / "g.txt")
    assert (tmp_path / "dir" / "g.txt").read_bytes() == b"f"


def test_move_sidecar_clears_stale_ones(tmp_path: Path) -> None:
    root = tmp_path / "meta"
    (root / "old" / "sub").mkdir(parents=True)
    (root / "old" / "sub" / "a.txt").write_text('{"md5": "a"}')
    (root / "new").write_text('{"md5": "stale file where a folder goes"}')
    move_sidecar(root / "old", root / "new" / "deeper" / "old", root)
    assert (root / "new" / "deeper" / "old" / "sub" / "a.txt").read_text() == '{"md5": "a"}'
    assert not (root / "old").exists()
    (root / "one.txt").write_text("1")
    (root / "two.txt").write_text("stale")
    move_sidecar(root / "one.txt", root / "two.txt", root)
    assert (root / "two.txt").read_text() == "1"
    move_sidecar(root / "none.txt", root / "x.txt", root)  # no sidecar: nothing to do
    assert not (root / "x.txt").exists()


def test_replace_file_contents_never_writes_through_a_link(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_bytes(b"untouched")
    os.symlink(target, tmp_path / "link")
    replace_file_contents(tmp_path / "link", b"new")
    assert target.read_bytes() == b"untouched"
    assert not (tmp_path / "link").is_symlink()
    assert (tmp_path / "link").read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "target"]
