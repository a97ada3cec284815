"""The CLI's contract: flags, TUS_STAGING_* environment, sizes, tokens files."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tus_staging.auth import parse_tokens_file
from tus_staging.cli import build_parser, byte_size, config_from, env_name


def serve_config(argv: list[str]):
    return config_from(build_parser().parse_args(["serve", *argv]))


def test_defaults_match_the_design() -> None:
    config = serve_config([])
    assert (config.host, config.port) == ("127.0.0.1", 1080)
    assert config.data_dir == Path("data")
    assert config.redis_url is None
    assert config.base_path == "/files/"
    assert config.workers == 1
    assert config.layout.staging_dir == Path("data/staging").absolute()
    assert config.layout.metadata_dir == Path("data/metadata").absolute()
    assert config.layout.upload_dir == Path("data/uploads").absolute()
    assert config.embedded_redis_dir == Path("data/redis")


def test_every_flag_reads_its_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUS_STAGING_PORT", "2080")
    monkeypatch.setenv("TUS_STAGING_DATA_DIR", "/srv/d")
    monkeypatch.setenv("TUS_STAGING_MAX_SIZE", "5G")
    monkeypatch.setenv("TUS_STAGING_SHA256", "true")
    monkeypatch.setenv("TUS_STAGING_NO_MD5_LANES", "1")
    monkeypatch.setenv("TUS_STAGING_UPLOAD_DIR", "/fast/uploads")
    config = serve_config([])
    assert config.port == 2080
    assert config.data_dir == Path("/srv/d")
    assert config.max_size == 5 * 1024**3
    assert config.sha256 and config.digest_names == ["md5", "sha256"]
    assert config.no_md5_lanes
    assert config.layout.upload_dir == Path("/fast/uploads")
    assert config.layout.staging_dir == Path("/srv/d/staging")
    # The command line wins over the environment.
    assert serve_config(["--port", "3080"]).port == 3080


def test_env_name() -> None:
    assert env_name("--redis-url") == "TUS_STAGING_REDIS_URL"
    assert env_name("--tokens-file") == "TUS_STAGING_TOKENS_FILE"


@pytest.mark.parametrize(
    ("text", "size"),
    [("1048576", 1048576), ("64K", 65536), ("5M", 5 << 20), ("10G", 10 << 30), ("1T", 1 << 40),
     ("5MiB", 5 << 20), ("2gb", 2 << 30)],
)  # fmt: skip
def test_byte_size(text: str, size: int) -> None:
    assert byte_size(text) == size


@given(st.integers(min_value=0, max_value=2**62))
def test_byte_size_plain_integers_round_trip(n: int) -> None:
    assert byte_size(str(n)) == n


def test_tokens_file_parsing() -> None:
    users = parse_tokens_file("# comment\n\ntokA alice  # trailing comment\n  tokB   bob\n")
    assert users == {"tokA": "alice", "tokB": "bob"}


@pytest.mark.parametrize("line", ["onlytoken", "tok user extra", "tok ../etc", "tok a/b"])
def test_tokens_file_errors_name_the_line(line: str) -> None:
    with pytest.raises(ValueError, match="2"):
        parse_tokens_file(f"ok alice\n{line}\n")
