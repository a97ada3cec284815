"""Safe path resolution inside one user's area: examples, properties, races."""

from __future__ import annotations

import os
import threading
from pathlib import Path, PurePosixPath

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.errors import BadRequest
from store.paths import (
    PathInTheWay,
    UnsafePath,
    ensure_dir,
    resolve_inside,
    user_root,
)

# --------------------------------------------------------------------------- fixtures


def _plant_area(base: Path) -> Path:
    """A user area with folders, files and symlinks both tame and hostile."""
    root = base / "alice"
    (root / "docs" / "sub").mkdir(parents=True)
    (root / "docs" / "f.txt").write_text("hello\n")
    (root / "%2e%2e").write_text("a literal name, not a parent\n")
    (base / "bob" / "private").mkdir(parents=True)
    (base / "bob" / "private" / "secret.txt").write_text("bob's\n")

    # Links that leave the area.
    (root / "etc").symlink_to("/etc")
    (root / "bob").symlink_to(base / "bob")
    (root / "bob_rel").symlink_to("../bob")
    (root / "docs" / "up").symlink_to("../..")
    (root / "dangling_out").symlink_to("/nonexistent-tus-staging/xyz")
    (root / "docs" / "secret").symlink_to(base / "bob" / "private" / "secret.txt")
    # Links that stay inside.
    (root / "inlink").symlink_to("docs")
    (root / "abs_in").symlink_to(root / "docs" / "sub")
    (root / "dangling_in").symlink_to("not-yet-there")
    (root / "file_link").symlink_to("docs/f.txt")
    # A chain: inside-looking first hop, outside in the end.
    (root / "chain").symlink_to("inlink/up")
    return root


@pytest.fixture(scope="module")
def area(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _plant_area(tmp_path_factory.mktemp("staging"))


def _inside(path: Path, root: Path) -> bool:
    real, real_root = os.path.realpath(path), os.path.realpath(root)
    return real == real_root or real.startswith(real_root + os.sep)


# --------------------------------------------------------------------------- user_root


def test_user_root_joins_a_plain_name(tmp_path: Path) -> None:
    assert user_root(tmp_path, "alice") == tmp_path / "alice"
    assert user_root(tmp_path, "ünïcödé.user-1") == tmp_path / "ünïcödé.user-1"


@pytest.mark.parametrize(
    "user",
    [
        "",
        ".",
        "..",
        "a/b",
        "a\\b",
        "a\x00b",
        "a\nb",
        "a\x7fb",
        "a\x85b",
        "x" * 256,
        "\ud800",
        "\uff0e\uff0e",
        "a\uff0fb",
        "a\u2215b",
    ],
)
def test_user_root_refuses_unsafe_names(tmp_path: Path, user: str) -> None:
    with pytest.raises(BadRequest) as info:
        user_root(tmp_path, user)
    assert info.value.reason
    assert "\n" not in info.value.reason


def test_user_root_allows_255_bytes(tmp_path: Path) -> None:
    assert user_root(tmp_path, "é" * 127 + "x").name == "é" * 127 + "x"


# --------------------------------------------------------------------------- lexical rules


@pytest.mark.parametrize(
    "relative",
    [
        "..",
        "../bob",
        "a/../../b",
        "docs/../f.txt",  # stays inside, refused all the same: no ".." at all
        "docs/..",
        "a\x00b",
        "a/\x00",
        "tab\there",
        "new\nline",
        "bell\x07",
        "del\x7f",
        "c1\x9b",
        "a\\b",
        "..\\..\\etc",
        "x" * 256,
        "\ud800",
        "a\uff0f..\uff0fb",  # fullwidth solidus
        "a\u2215b",  # division slash
        "1\u20442",  # fraction slash
        "\uff0e\uff0e",  # fullwidth dots -> ".." under NFKC
        "\u2025",  # two dot leader -> ".."
        "a\uff3cb",  # fullwidth reverse solidus
        PurePosixPath("a/../../b"),
    ],
)
def test_lexically_unsafe_paths_are_refused(area: Path, relative: str | PurePosixPath) -> None:
    # The path policy's own refusal (protocol/paths.py), before the filesystem is looked at.
    with pytest.raises(BadRequest) as info:
        resolve_inside(area, relative)
    assert info.value.reason and "\n" not in info.value.reason


@pytest.mark.parametrize("relative", ["", ".", "./", "./.", "/", "//", PurePosixPath(".")])
def test_empty_path_is_the_root(area: Path, relative: str | PurePosixPath) -> None:
    assert resolve_inside(area, relative) == area


def test_harmless_spellings_collapse(area: Path) -> None:
    assert resolve_inside(area, "docs//sub/") == area / "docs" / "sub"
    assert resolve_inside(area, "./docs/./f.txt") == area / "docs" / "f.txt"
    assert resolve_inside(area, PurePosixPath("docs/sub")) == area / "docs" / "sub"


def test_percent_encoding_is_not_decoded(area: Path) -> None:
    # "%2e%2e" is an ordinary name here; decoding is the HTTP layer's job, done once.
    assert resolve_inside(area, "%2e%2e", must_exist=True) == area / "%2e%2e"


def test_new_paths_need_not_exist(area: Path) -> None:
    assert resolve_inside(area, "new/deep/file.bin") == area / "new" / "deep" / "file.bin"
    with pytest.raises(FileNotFoundError):
        resolve_inside(area, "new/deep/file.bin", must_exist=True)


def test_relative_root_gives_absolute_result(area: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(area.parent)
    result = resolve_inside(Path("alice"), "docs/f.txt", must_exist=True)
    assert result.is_absolute()
    assert result == area / "docs" / "f.txt"


# --------------------------------------------------------------------------- symlinks


@pytest.mark.parametrize(
    "relative",
    [
        "etc",
        "etc/passwd",
        "bob",
        "bob/private/secret.txt",
        "bob_rel/private",
        "docs/up",
        "docs/up/bob",
        "dangling_out",
        "dangling_out/new.txt",
        "docs/secret",
        "chain",
        "chain/anything",
        "inlink/up/alice",
    ],
)
def test_links_leaving_the_area_are_refused(area: Path, relative: str) -> None:
    with pytest.raises(UnsafePath, match="outside"):
        resolve_inside(area, relative)


@pytest.mark.parametrize(
    ("relative", "expected"),
    [
        ("inlink", "inlink"),
        ("inlink/f.txt", "inlink/f.txt"),
        ("inlink/sub/new.bin", "inlink/sub/new.bin"),
        ("abs_in", "abs_in"),
        ("abs_in/new.bin", "abs_in/new.bin"),
        ("dangling_in", "dangling_in"),
        ("file_link", "file_link"),
    ],
)
def test_links_staying_inside_are_allowed(area: Path, relative: str, expected: str) -> None:
    result = resolve_inside(area, relative)
    # Not resolved: the caller replaces the link itself, never writes through it.
    assert result == area / expected
    assert _inside(result, area)


def test_link_planted_between_checks_is_caught(tmp_path: Path) -> None:
    root = tmp_path / "alice"
    (root / "dest").mkdir(parents=True)
    (tmp_path / "bob").mkdir()
    first = resolve_inside(root, "dest/out/file.bin")  # at POST time: fine
    assert first == root / "dest" / "out" / "file.bin"
    # Meanwhile, someone plants a link where the destination folder was to be.
    (root / "dest" / "out").symlink_to(tmp_path / "bob")
    with pytest.raises(UnsafePath, match="outside"):
        resolve_inside(root, "dest/out/file.bin")  # right before the move: refused


def test_root_behind_a_symlink_works(tmp_path: Path) -> None:
    real = tmp_path / "real" / "alice"
    (real / "docs").mkdir(parents=True)
    (tmp_path / "base").symlink_to(tmp_path / "real")
    root = tmp_path / "base" / "alice"
    assert resolve_inside(root, "docs/x") == root / "docs" / "x"
    with pytest.raises(UnsafePath):
        (real / "esc").symlink_to(tmp_path)
        resolve_inside(root, "esc/real")


def test_file_in_the_way_of_a_folder(area: Path) -> None:
    with pytest.raises(PathInTheWay, match="not a folder") as info:
        resolve_inside(area, "docs/f.txt/child")
    assert "docs/f.txt" in info.value.reason
    assert isinstance(info.value, NotADirectoryError)
    with pytest.raises(PathInTheWay):
        resolve_inside(area, "file_link/child")


# --------------------------------------------------------------------------- properties

_PIECES = [
    "",
    ".",
    "..",
    "...",
    "%2e%2e",
    "%2f",
    "\\",
    "\x00",
    "\n",
    "\uff0f",
    "\u2215",
    "\uff0e\uff0e",
    "\u2025",
    "\ufe52",
    "\u2024",
    "e\u0301",
    "\u00e9",
    "ﬁ",
    "etc",
    "passwd",
    "bob",
    "bob_rel",
    "docs",
    "up",
    "inlink",
    "abs_in",
    "chain",
    "dangling_in",
    "dangling_out",
    "file_link",
    "secret",
    "sub",
    "f.txt",
    "alice",
    "~",
]

_component = st.one_of(st.sampled_from(_PIECES), st.text(max_size=12))
_joined = st.builds(
    lambda parts, sep, lead: lead + sep.join(parts),
    st.lists(_component, max_size=6),
    st.sampled_from(["/", "/", "//", "\\", "\uff0f"]),
    st.sampled_from(["", "", "./", "/", "../"]),
)
# Walks made only of names that exist in the planted area: these reach the symlinks.
_walks = st.lists(
    st.sampled_from([n for n in _PIECES if n and n not in ("..", "\\", "\x00", "\n")]),
    min_size=1,
    max_size=5,
).map("/".join)
_relative_paths = st.one_of(_joined, _walks, st.text(max_size=40))


@settings(
    max_examples=600, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(relative=_relative_paths, must_exist=st.booleans())
def test_any_text_is_refused_or_stays_inside(area: Path, relative: str, must_exist: bool) -> None:
    try:
        result = resolve_inside(area, relative, must_exist=must_exist)
    except (UnsafePath, BadRequest) as exc:
        assert exc.reason and "\n" not in exc.reason
        return
    except FileNotFoundError:
        assert must_exist
        return
    assert result.is_absolute()
    assert _inside(result, area), (relative, result, os.path.realpath(result))
    # Unresolved: exactly root joined with the client's components.
    assert str(result).startswith(str(area))
    if must_exist:
        assert result.exists()


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(relative=_relative_paths)
def test_pure_posix_input_agrees_with_text(area: Path, relative: str) -> None:
    def outcome(value: str | PurePosixPath) -> object:
        try:
            return resolve_inside(area, value)
        except (UnsafePath, BadRequest):
            return UnsafePath

    assert outcome(PurePosixPath(relative)) == outcome(relative) or relative.startswith("//")


# --------------------------------------------------------------------------- ensure_dir


def test_ensure_dir_creates_nested_and_is_idempotent(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "c"
    ensure_dir(target)
    ensure_dir(target)
    assert target.is_dir()


def test_ensure_dir_applies_mode_to_leaf(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        ensure_dir(tmp_path / "m", mode=0o700)
    finally:
        os.umask(old)
    assert (tmp_path / "m").stat().st_mode & 0o777 == 0o700


def test_ensure_dir_reports_a_file_in_the_way(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(PathInTheWay) as info:
        ensure_dir(tmp_path / "f" / "sub" / "deeper")
    assert str(tmp_path / "f") in info.value.reason
    assert "not a folder" in info.value.reason
    with pytest.raises(NotADirectoryError):
        ensure_dir(tmp_path / "f")


def test_ensure_dir_through_an_inside_link(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to("real")
    ensure_dir(tmp_path / "link")
    ensure_dir(tmp_path / "link" / "child")
    assert (tmp_path / "real" / "child").is_dir()


def test_ensure_dir_concurrent_callers_all_succeed(tmp_path: Path) -> None:
    target = tmp_path / "u" / "v" / "w" / "x" / "y" / "z"
    start = threading.Barrier(20)
    errors: list[BaseException] = []

    def worker() -> None:
        start.wait()
        try:
            ensure_dir(target)
        except BaseException as exc:  # collected, asserted on below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert target.is_dir()
