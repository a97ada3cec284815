"""Credentials as hostile input: a tokens file validated at start and re-read safely while
the server runs, and bytes in Authorization that can be no token answered 401, never 500."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from tus_staging.auth import TokensFileError, is_token_text, parse_tokens_file

from .fake_auth import FakeAuthService
from .raw_http import raw_status
from .servers import TOKENS, ServerProcess

# --- the file's grammar ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("tök carol", "printable ASCII"),
        ("tok-alice carol", "given before on line 1"),
        ("tok carol dave", "expected 'TOKEN USERNAME'"),
        ("tok ..", "cannot name a directory"),
    ],
)
def test_a_bad_line_is_named_with_its_number_and_reason(line: str, reason: str) -> None:
    with pytest.raises(TokensFileError) as refused:
        parse_tokens_file(f"tok-alice alice\n# a comment\n{line}\n", "tokens.txt")
    assert str(refused.value).startswith("tokens.txt:3: ")
    assert reason in str(refused.value)


@given(st.text(max_size=40))
def test_token_text_is_exactly_printable_ascii_without_spaces(token: str) -> None:
    expected = all(0x21 <= ord(char) <= 0x7E for char in token)
    assert is_token_text(token) == expected


# --- refused at start --------------------------------------------------------------------------


def serve_and_fail(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "tus_staging.cli", "serve", "--data-dir",
               str(tmp_path / "d"), "--redis-url", "redis://127.0.0.1:9", *args]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def test_a_malformed_tokens_file_stops_the_start_with_file_line_and_reason(
    tmp_path: Path,
) -> None:
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("tok-a alice\n\ntok-b bob extra\n")
    result = serve_and_fail(tmp_path, "--tokens-file", str(tokens))
    assert result.returncode != 0
    assert f"{tokens}:3: expected 'TOKEN USERNAME'" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_missing_tokens_file_stops_the_start(tmp_path: Path) -> None:
    result = serve_and_fail(tmp_path, "--tokens-file", str(tmp_path / "absent.txt"))
    assert result.returncode != 0
    assert "absent.txt: No such file or directory" in result.stderr
    assert "Traceback" not in result.stderr


# --- re-read while serving -----------------------------------------------------------------


def replace_file(path: Path, text: str) -> None:
    """As config tools do: a new file renamed over the old one."""
    temporary = path.with_suffix(".new")
    temporary.write_text(text)
    os.replace(temporary, path)


def whoami(server: ServerProcess, token: str) -> requests.Response:
    return requests.get(f"{server.url}/test-auth", headers={"Authorization": token}, timeout=10)


def test_a_changed_file_is_read_again_and_a_bad_version_keeps_the_last_good_table(
    server: ServerProcess, tokens_file: Path
) -> None:
    good = tokens_file.read_text()
    replace_file(tokens_file, good + "tok-dave dave\n")
    assert whoami(server, "tok-dave").text == "I'm authenticated as dave"

    replace_file(tokens_file, good + "tok-dave dave\nthis line is malformed\n")
    for _ in range(3):
        assert whoami(server, "tok-dave").text == "I'm authenticated as dave"
        assert whoami(server, TOKENS["bob"]).status_code == 200
        assert whoami(server, "nobody").status_code == 401
    assert server.log().count(f"{tokens_file}:{len(good.splitlines()) + 2}: expected") == 1

    tokens_file.unlink()  # between a config tool's delete and its write
    for _ in range(3):
        assert whoami(server, "tok-dave").status_code == 200
    assert server.log().count(f"{tokens_file}: No such file or directory") == 1

    replace_file(tokens_file, good)  # dave's token withdrawn: the new table is whole
    assert whoami(server, "tok-dave").status_code == 401
    assert whoami(server, TOKENS["alice"]).text == "I'm authenticated as alice"


# --- bytes that can be no token ------------------------------------------------------------

HOSTILE_CREDENTIALS = [
    b"Authorization: Bearer \xff\xfe\x80",  # not UTF-8
    b"Authorization: Bearer tok-\xc3\xa9",  # UTF-8, not ASCII
    b"Authorization: \xe2\x80\xae",  # a bidi override
    b"Cookie: kbase_session=\xff\xfe",
]


def status_of(server: ServerProcess, header: bytes) -> int:
    return raw_status(
        server, b"GET /test-auth HTTP/1.1\r\nHost: 127.0.0.1\r\n" + header + b"\r\n\r\n"
    )


@pytest.mark.parametrize("header", HOSTILE_CREDENTIALS)
def test_non_ascii_credentials_are_401_with_a_tokens_file(
    server: ServerProcess, header: bytes
) -> None:
    assert status_of(server, header) == 401


@pytest.fixture
def auth_service() -> Iterator[FakeAuthService]:
    with FakeAuthService({"kb-token": "kbuser"}) as service:
        yield service


@pytest.mark.parametrize("header", HOSTILE_CREDENTIALS)
def test_non_ascii_credentials_are_401_with_kbase_auth_and_never_sent_on(
    kbase_server: ServerProcess, auth_service: FakeAuthService, header: bytes
) -> None:
    assert status_of(kbase_server, header) == 401
    assert auth_service.calls == 0
