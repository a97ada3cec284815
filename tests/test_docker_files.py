"""Container files, checked without a Docker engine: static checks plus the entrypoint
script run directly with ``sh`` against a stub binary that prints its arguments."""

from __future__ import annotations

import argparse
import itertools
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from store.topology import parse_sentinel_url
from tus_staging.cli import build_parser

REPO = Path(__file__).resolve().parent.parent
DOCKERFILE = REPO / "Dockerfile"
COMPOSE = REPO / "compose.yaml"
COMPOSE_SENTINEL = REPO / "compose.sentinel.yaml"
SENTINEL_CONF = REPO / "docker" / "sentinel.conf"
NGINX_CONF = REPO / "docker" / "nginx-sentinel.conf"
ENTRYPOINT = REPO / "docker" / "docker-entrypoint.sh"
DOCKERIGNORE = REPO / ".dockerignore"

SH = shutil.which("sh")


# --------------------------------------------------------------------------- helpers


def _compose(path: Path = COMPOSE) -> dict[str, Any]:
    yaml = pytest.importorskip("yaml")
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict)
    return data


def _environment(service: dict[str, Any]) -> dict[str, str]:
    """Compose allows a mapping or a list of KEY=VALUE; normalize to a dict of str."""
    env = service.get("environment", {})
    if isinstance(env, list):
        return dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            result.append((word.upper(), rest.strip()))
    return result


def _final_stage() -> list[tuple[str, str]]:
    instructions = _dockerfile_instructions()
    last_from = max(i for i, (word, _) in enumerate(instructions) if word == "FROM")
    return instructions[last_from:]


@pytest.fixture
def stub(tmp_path: Path) -> Path:
    """A stand-in for the tus-staging binary: prints each argument on its own line,
    then the host the server would read from its environment."""
    script = tmp_path / "bin" / "tus-staging-stub"
    script.parent.mkdir()
    script.write_text(
        '#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done\n'
        'printf "env-host=%s\\n" "${TUS_STAGING_HOST-}"\n'
    )
    script.chmod(0o755)
    return script


def _run_entrypoint(
    args: list[str], stub: Path, data_dir: Path | str, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    assert SH is not None
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    env.update(_environment(_compose()["services"]["tus-staging"]))
    env["TUS_STAGING_BIN"] = str(stub)
    env["TUS_STAGING_DATA_DIR"] = str(data_dir)  # /data is the container's, not ours
    env.update(extra_env or {})
    return subprocess.run(
        [SH, str(ENTRYPOINT), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def _printed(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


# --------------------------------------------------------------------------- compose


def test_compose_services() -> None:
    services = _compose()["services"]
    assert set(services) >= {"redis", "tus-staging"}

    redis = services["redis"]
    assert redis["image"] == "redis:7-alpine"
    command = redis["command"]
    command = " ".join(command) if isinstance(command, list) else command
    assert "--appendonly yes" in command
    assert "redis-data:/data" in redis["volumes"]
    assert "redis-cli" in redis["healthcheck"]["test"]
    assert "ping" in redis["healthcheck"]["test"]


def test_compose_tus_staging_service() -> None:
    service = _compose()["services"]["tus-staging"]
    build = service["build"]
    assert build["context"] == "."
    assert build["args"]["APP_UID"] == "${APP_UID:-1000}"
    assert build["args"]["APP_GID"] == "${APP_GID:-1000}"
    assert "1080:1080" in service["ports"]
    assert "staging-data:/data" in service["volumes"]
    assert service["depends_on"]["redis"]["condition"] == "service_healthy"

    env = _environment(service)
    assert env["TUS_STAGING_REDIS_URL"] == "redis://redis:6379/0"
    assert env["TUS_STAGING_DATA_DIR"] == "/data"
    assert env["TUS_STAGING_WORKERS"] == "2"
    # Listening on 0.0.0.0 needs authentication configured.
    assert env.get("TUS_STAGING_TOKENS_FILE") or env.get("TUS_STAGING_AUTH_URL")


def test_compose_declares_volumes_and_tokens_secret() -> None:
    compose = _compose()
    assert set(compose["volumes"]) >= {"redis-data", "staging-data"}
    service = compose["services"]["tus-staging"]
    tokens = _environment(service)["TUS_STAGING_TOKENS_FILE"]
    if tokens.startswith("/run/secrets/"):
        name = tokens.removeprefix("/run/secrets/")
        assert name in service["secrets"]
        assert name in compose["secrets"]


# --------------------------------------------------------------------------- Dockerfile


def test_dockerfile_base_and_build_args() -> None:
    instructions = _dockerfile_instructions()
    froms = [rest for word, rest in instructions if word == "FROM"]
    assert froms and all(rest.startswith("python:3.11-slim") for rest in froms)
    args = {rest.split("=")[0]: rest for word, rest in _final_stage() if word == "ARG"}
    assert args["APP_UID"] == "APP_UID=1000"
    assert args["APP_GID"] == "APP_GID=1000"


def test_dockerfile_runs_as_non_root_user() -> None:
    users = [rest for word, rest in _final_stage() if word == "USER"]
    assert users, "no USER in the final stage"
    assert users[-1].split(":")[0] not in ("root", "0")
    runs = " ".join(rest for word, rest in _final_stage() if word == "RUN")
    assert "useradd" in runs and "$APP_UID" in runs and "$APP_GID" in runs


def test_dockerfile_installs_package_without_cache() -> None:
    runs = [rest for word, rest in _dockerfile_instructions() if word == "RUN"]
    assert any(
        "pip install" in run and "--no-cache-dir" in run and run.endswith(".") for run in runs
    )


def test_dockerfile_runtime_settings() -> None:
    final = _final_stage()
    words = {word: rest for word, rest in final}
    assert "1080" in words["EXPOSE"].split()
    assert "/data" in words["VOLUME"]
    assert words["ENTRYPOINT"] == '["/usr/local/bin/docker-entrypoint.sh"]'
    healthcheck = words["HEALTHCHECK"]
    assert "python" in healthcheck and "/healthz" in healthcheck and "127.0.0.1" in healthcheck
    assert "curl" not in healthcheck
    # /data is owned by the app user before VOLUME freezes it.
    names = [word for word, _ in final]
    chown = next(
        i for i, (w, r) in enumerate(final) if w == "RUN" and "chown" in r and "/data" in r
    )
    assert chown < names.index("VOLUME")
    copies = [rest for word, rest in final if word == "COPY"]
    assert any("docker/docker-entrypoint.sh" in c for c in copies)


def test_healthcheck_command_is_valid_python() -> None:
    healthcheck = dict(_final_stage())["HEALTHCHECK"]
    match = re.search(r'CMD \["python", "-c", "(.*)"\]\s*$', healthcheck)
    assert match, healthcheck
    compile(match.group(1), "<healthcheck>", "exec")


def test_dockerignore_keeps_secrets_and_venv_out() -> None:
    patterns = {
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", "tokens.txt"} <= patterns
    # pip install . needs these: setup.cfg reads README.md.
    for needed in ("setup.cfg", "pyproject.toml", "README.md", "store", "protocol", "tus_staging"):
        assert needed not in patterns


# --------------------------------------------------------------------------- entrypoint


needs_sh = pytest.mark.skipif(SH is None, reason="no sh on this machine")


def test_entrypoint_is_posix_sh() -> None:
    text = ENTRYPOINT.read_text()
    assert text.startswith("#!/bin/sh\n")
    assert re.search(r"^set -eu$", text, re.MULTILINE)
    assert os.access(ENTRYPOINT, os.X_OK)
    if SH is not None:
        subprocess.run([SH, "-n", str(ENTRYPOINT)], check=True)
    dash = shutil.which("dash")
    if dash is not None:  # the strictest POSIX shell around, if present
        subprocess.run([dash, "-n", str(ENTRYPOINT)], check=True)


@needs_sh
def test_no_args_serves_on_all_interfaces(stub: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    lines = _printed(_run_entrypoint([], stub, data))
    assert lines == ["serve", "--host", "0.0.0.0", "env-host=0.0.0.0"]
    assert data.is_dir()
    assert list(data.iterdir()) == []  # the write probe cleaned up after itself


@needs_sh
def test_empty_first_arg_serves(stub: Path, tmp_path: Path) -> None:
    lines = _printed(_run_entrypoint([""], stub, tmp_path / "data"))
    assert lines[:3] == ["serve", "--host", "0.0.0.0"]
    assert "" not in lines


@needs_sh
def test_flags_go_to_serve(stub: Path, tmp_path: Path) -> None:
    lines = _printed(
        _run_entrypoint(["--port", "1081", "--max-size", "5 GB"], stub, tmp_path / "d")
    )
    assert lines[:-1] == ["serve", "--host", "0.0.0.0", "--port", "1081", "--max-size", "5 GB"]


@needs_sh
def test_host_from_environment_is_honoured(stub: Path, tmp_path: Path) -> None:
    result = _run_entrypoint([], stub, tmp_path / "d", {"TUS_STAGING_HOST": "::"})
    assert _printed(result)[:3] == ["serve", "--host", "::"]


@needs_sh
def cli_subcommands() -> list[str]:
    """Every subcommand the CLI has: the entrypoint must hand each to it."""
    parser = build_parser()
    [commands] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return sorted(commands.choices)


@pytest.mark.parametrize("subcommand", cli_subcommands())
def test_subcommands_get_the_binary_prefixed(stub: Path, tmp_path: Path, subcommand: str) -> None:
    args = [subcommand, "a file with spaces", "--url", "http://x/files/"]
    lines = _printed(_run_entrypoint(args, stub, tmp_path / "d"))
    assert lines == [*args, "env-host=0.0.0.0"]


@needs_sh
def test_other_commands_run_as_given(stub: Path, tmp_path: Path) -> None:
    result = _run_entrypoint(["echo", "hello", "world"], stub, tmp_path / "file" / "no")
    # Not the server: no data-dir check, no prefix.
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hello world\n"


@needs_sh
@pytest.mark.parametrize("args", [[], ["serve"], ["cleanup"], ["--port", "1"]])
def test_unwritable_data_dir_fails_clearly(stub: Path, tmp_path: Path, args: list[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a regular file: nothing can be created below it\n")
    result = _run_entrypoint(args, stub, blocker / "data")
    assert result.returncode == 1
    assert result.stdout == ""  # the stub never ran
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1
    assert str(blocker / "data") in message
    assert f"UID {os.getuid()}" in message
    assert "APP_UID" in message


@needs_sh
@pytest.mark.parametrize("form", ["separate", "equals"])
def test_data_dir_flag_overrides_environment(stub: Path, tmp_path: Path, form: str) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    bad = str(blocker / "data")
    flag = ["--data-dir", bad] if form == "separate" else [f"--data-dir={bad}"]
    result = _run_entrypoint(["serve", *flag], stub, tmp_path / "fine")
    assert result.returncode == 1
    assert bad in result.stderr

    good = tmp_path / "good"
    flag = ["--data-dir", str(good)] if form == "separate" else [f"--data-dir={good}"]
    result = _run_entrypoint(["serve", *flag], stub, blocker / "env-dir")
    assert _printed(result)[0] == "serve"
    assert good.is_dir()


@needs_sh
def test_upload_does_not_need_a_data_dir(stub: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = _run_entrypoint(["upload", "f.bin", "--url", "u"], stub, blocker / "data")
    assert _printed(result)[:4] == ["upload", "f.bin", "--url", "u"]


def _tool(name: str) -> str:
    """A linter installed with the test extras (in this interpreter's environment)."""
    candidate = Path(sys.prefix) / "bin" / name
    found = str(candidate) if candidate.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed (it comes with the test extras)")
    return found


def test_dockerfile_is_hadolint_clean() -> None:
    result = subprocess.run(
        [_tool("hadolint"), "--no-color", str(DOCKERFILE)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_would_catch_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN apt-get install curl\nUSER root\n")
    result = subprocess.run([_tool("hadolint"), "--no-color", str(bad)], capture_output=True)
    assert result.returncode != 0


def test_compose_file_follows_the_compose_specification(tmp_path: Path) -> None:
    check = [_tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec"]
    for path in (COMPOSE, COMPOSE_SENTINEL):
        good = subprocess.run([*check, str(path)], capture_output=True, text=True)
        assert good.returncode == 0, good.stdout + good.stderr
    broken = tmp_path / "compose.yaml"
    broken.write_text("services:\n  web:\n    ports: 80\n    restart: sometimes-maybe\n")
    assert subprocess.run([*check, str(broken)], capture_output=True).returncode != 0


# --------------------------------------------------------------------------- compose: Sentinel


def _words(command: str | list[str]) -> list[str]:
    return command.split() if isinstance(command, str) else [str(word) for word in command]


def _flag(command: list[str], flag: str) -> list[str]:
    """The words after ``flag`` in a redis-server command line, up to the next flag."""
    if flag not in command:
        return []
    rest = command[command.index(flag) + 1 :]
    return list(itertools.takewhile(lambda word: not word.startswith("--"), rest))


def _sentinel_directives() -> dict[str, list[str]]:
    directives = {}
    for line in SENTINEL_CONF.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            words = line.split()
            key = " ".join(words[:2]) if words[0] == "sentinel" else words[0]
            directives[key] = words[2:] if words[0] == "sentinel" else words[1:]
    return directives


def _sentinel_cluster() -> dict[str, Any]:
    """The file's parts, found by what they run rather than by their names."""
    services = _compose(COMPOSE_SENTINEL)["services"]
    sentinels = {
        name: s
        for name, s in services.items()
        if "--sentinel" in " ".join(_words(s.get("command", "")))
    }
    data_nodes = {
        name: _words(s["command"])
        for name, s in services.items()
        if name not in sentinels and _words(s.get("command", ""))[:1] == ["redis-server"]
    }
    servers = {
        name: s for name, s in services.items() if "TUS_STAGING_REDIS_URL" in _environment(s)
    }
    return {"services": services, "sentinels": sentinels, "data": data_nodes, "servers": servers}


def test_sentinel_compose_has_a_master_a_replica_three_sentinels_and_two_servers() -> None:
    parts = _sentinel_cluster()
    masters = [n for n, command in parts["data"].items() if not _flag(command, "--replicaof")]
    replicas = [n for n, command in parts["data"].items() if _flag(command, "--replicaof")]
    assert len(masters) == 1 and len(replicas) == 1
    assert len(parts["sentinels"]) == 3
    assert len(parts["servers"]) == 2
    for name, command in parts["data"].items():
        assert _flag(command, "--appendonly") == ["yes"], name
        # Each data node announces the name it is reached by: after a failover the
        # sentinels hand that name out, and it must resolve to the promoted container.
        assert _flag(command, "--replica-announce-ip") == [name]
    (master,) = masters
    assert _flag(parts["data"][replicas[0]], "--replicaof") == [master, "6379"]


def test_every_dependency_and_volume_of_the_sentinel_compose_exists() -> None:
    compose = _compose(COMPOSE_SENTINEL)
    services = compose["services"]
    for name, service in services.items():
        depends = service.get("depends_on", [])
        for needed in depends if isinstance(depends, list) else depends.keys():
            assert needed in services, (name, needed)
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (REPO / source).is_file(), (name, source)
            else:
                assert source in compose["volumes"], (name, source)


def test_the_sentinels_watch_the_master_the_servers_ask_for() -> None:
    parts = _sentinel_cluster()
    directives = _sentinel_directives()
    name, host, port, quorum = directives["sentinel monitor"]
    master = next(n for n, command in parts["data"].items() if not _flag(command, "--replicaof"))
    assert (host, port) == (master, "6379")
    # More than half of the sentinels must agree: a minority cut off cannot fail over.
    assert len(parts["sentinels"]) / 2 < int(quorum) <= len(parts["sentinels"])
    assert directives["sentinel resolve-hostnames"] == ["yes"]
    assert directives["sentinel announce-hostnames"] == ["yes"]
    for sentinel, service in parts["sentinels"].items():
        mounts = [v.split(":") for v in service["volumes"]]
        assert any(source == "./docker/sentinel.conf" for source, *_ in mounts), sentinel
        assert "cp /etc/redis/sentinel.conf /data/sentinel.conf" in " ".join(service["command"])
        assert any(
            target == "/data" and source != "./docker/sentinel.conf"
            for source, target, *_ in mounts
        ), f"{sentinel} cannot rewrite its config"
        assert service.get("user") not in (None, "root", "0"), sentinel
    for server, service in parts["servers"].items():
        url = parse_sentinel_url(_environment(service)["TUS_STAGING_REDIS_URL"])
        assert url.master == name, server
        assert {host for host, _ in url.sentinels} == set(parts["sentinels"]), server
        assert {port for _, port in url.sentinels} == {int(directives["port"][0])}, server


def test_both_servers_share_one_data_directory_behind_the_proxy() -> None:
    parts = _sentinel_cluster()
    servers = parts["servers"]
    environments = [_environment(service) for service in servers.values()]
    assert all(env == environments[0] for env in environments)
    data_dir = environments[0]["TUS_STAGING_DATA_DIR"]
    mounts = {
        next(v.split(":")[0] for v in service["volumes"] if v.split(":")[1] == data_dir)
        for service in servers.values()
    }
    assert len(mounts) == 1, f"the servers do not share their data directory: {mounts}"
    assert environments[0]["TUS_STAGING_BEHIND_PROXY"] in ("1", "true", "yes")
    assert environments[0].get("TUS_STAGING_TOKENS_FILE") or environments[0].get(
        "TUS_STAGING_AUTH_URL"
    )

    nginx = NGINX_CONF.read_text()
    upstream = re.search(r"upstream \w+ \{(.*?)\}", nginx, re.DOTALL)
    assert upstream is not None
    backends = set(re.findall(r"server ([\w.-]+):(\d+)", upstream.group(1)))
    assert backends == {(name, "1080") for name in servers}
    for directive in ("client_max_body_size 0;", "proxy_request_buffering off;"):
        assert directive in nginx, directive
    proxy = next(s for s in parts["services"].values() if "nginx" in s.get("image", ""))
    assert any(v.startswith("./docker/nginx-sentinel.conf:") for v in proxy["volumes"])
    assert set(proxy["depends_on"]) == set(servers)
