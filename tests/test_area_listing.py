"""The walk behind /list, /search, /existence and /similar (store/area_listing.py), in
process, on any tree hypothesis makes."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from store.area_listing import AreaWalk

NAMES = st.sampled_from(["a", "b", "B", ".h", "é", "z z", "a.txt", ".x.txt", "10", "9"])
TREES = st.lists(
    st.tuples(st.lists(NAMES, min_size=1, max_size=4), st.booleans()), min_size=1, max_size=25
)


def build(home: Path, spec: list[tuple[list[str], bool]]) -> None:
    for parts, is_folder in spec:
        path = home.joinpath(*parts)
        try:
            if is_folder:
                path.mkdir(parents=True, exist_ok=True)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(("/".join(parts)).encode())
        except (FileExistsError, NotADirectoryError, IsADirectoryError):
            pass  # a file where a folder was asked for, or the reverse: keep the first


def expected(home: Path, show_hidden: bool, max_depth: int | None) -> set[str]:
    """Every entry below ``home`` the rules allow, from os.walk."""
    found = set()
    for folder, dirs, files in os.walk(home):
        relative = PurePosixPath(Path(folder).relative_to(home))
        if not show_hidden:
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            files = [f for f in files if not f.startswith(".")]
        for name in dirs + files:
            path = relative / name
            if max_depth is None or len(path.parts) <= max_depth:
                found.add(path.as_posix())
    return found


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    spec=TREES,
    show_hidden=st.booleans(),
    max_depth=st.one_of(st.none(), st.integers(min_value=1, max_value=4)),
)
def test_walk_lists_every_entry_once_in_order(
    tmp_path_factory, spec, show_hidden: bool, max_depth: int | None
) -> None:
    root = tmp_path_factory.mktemp("walk")
    home, meta = root / "staging" / "alice", root / "metadata" / "alice"
    home.mkdir(parents=True)
    build(home, spec)
    walk = AreaWalk(home, meta, PurePosixPath("."), show_hidden=show_hidden, max_depth=max_depth)
    records = list(walk)
    relatives = [record["path"].removeprefix("alice/") for record in records]
    assert len(relatives) == len(set(relatives))
    assert set(relatives) == expected(home, show_hidden, max_depth)
    for record, relative in zip(records, relatives, strict=True):
        info = os.stat(home / relative)
        assert record["name"] == PurePosixPath(relative).name
        assert record["isFolder"] == os.path.isdir(home / relative)
        assert (record["mtime"], record["size"]) == (int(info.st_mtime * 1000), info.st_size)
        assert ("source" in record) == (not record["isFolder"])
    # Depth first: a folder comes right before what it holds, all of it together;
    # siblings: folders first, then by name.
    for index, relative in enumerate(relatives):
        inside = [r for r in relatives if r.startswith(relative + "/")]
        assert relatives[index + 1 : index + 1 + len(inside)] == inside
    by_parent: dict[str, list[dict]] = {}
    for record, relative in zip(records, relatives, strict=True):
        by_parent.setdefault(str(PurePosixPath(relative).parent), []).append(record)
    for siblings in by_parent.values():
        keys = [(not s["isFolder"], s["name"]) for s in siblings]
        assert keys == sorted(keys)


@pytest.mark.parametrize(
    ("start", "error"), [("missing", FileNotFoundError), ("f", NotADirectoryError)]
)
def test_a_walk_of_a_missing_or_file_start_says_so(tmp_path: Path, start: str, error) -> None:
    home = tmp_path / "alice"
    home.mkdir()
    (home / "f").write_bytes(b"f")
    with pytest.raises(error):
        list(AreaWalk(home, tmp_path / "meta", PurePosixPath(start), show_hidden=False))
