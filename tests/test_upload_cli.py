"""``tus-staging upload`` against the real server: folders, resuming (and never resuming
into the wrong upload), progress inside one request, parallel files, exit status."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import pytest

from tus_staging.upload_command import files_to_upload, upload_key
from tus_staging.url_store import ResumeStore

from .checks import staged
from .cli_runs import OnTerminal, access_log, run_cli, start_cli
from .conftest import md5_of
from .fault_proxy import FaultProxy, cut_after, passthrough, throttle
from .servers import TOKENS, RedisProcess, ServerProcess, metric_values, wait_until
from .tus_client import TusTestClient

MiB = 1024 * 1024


def bytes_received(server: ServerProcess) -> float:
    return metric_values(server.url).get("tus_staging_bytes_received_total", 0.0)


def test_upload_folder_keeps_relative_paths(server: ServerProcess, tmp_path: Path) -> None:
    source = tmp_path / "run7"
    (source / "raw").mkdir(parents=True)
    (source / "notes.txt").write_text("line 1\nline 2\n")
    (source / "raw" / "reads.bin").write_bytes(os.urandom(3_000_000))
    (source / "raw" / "empty.dat").write_bytes(b"")
    single = tmp_path / "single.bin"
    single.write_bytes(os.urandom(100_000))
    # The base URL, the tus endpoint, the environment's: the same uploads.
    for dest, url_args in [
        ("base", ["--url", server.url]),
        ("endpoint", ["--url", server.files_url]),
        ("environment", []),
    ]:
        result = run_cli(
            tmp_path, "upload", str(source), str(single), *url_args, "--dest", dest,
            "--chunk-size", "1M", TUS_STAGING_URL=server.url,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        for local, path in [
            (source / "notes.txt", f"{dest}/run7/notes.txt"),
            (source / "raw" / "reads.bin", f"{dest}/run7/raw/reads.bin"),
            (source / "raw" / "empty.dat", f"{dest}/run7/raw/empty.dat"),
            (single, f"{dest}/single.bin"),
        ]:
            assert md5_of(staged(server, "alice", path)) == md5_of(local)
            assert f"uploaded {local} -> {path}" in result.stderr
        summary = result.stderr.strip().splitlines()[-1]
        assert re.fullmatch(
            r"4 files, 3\.0 MiB \(3\.0 MiB sent\) in [\d.]+ s, [\d.]+ MB/s, 0 resumed", summary
        ), summary


def test_upload_exit_status(server: ServerProcess, tmp_path: Path) -> None:
    missing = run_cli(tmp_path, "upload", str(tmp_path / "nope"), "--url", server.url)
    assert (missing.returncode, missing.stderr.strip()) == (
        2, f"tus-staging upload: {tmp_path / 'nope'}: no such file or directory"
    )  # fmt: skip
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for folder in ("a", "b"):
        (tmp_path / folder / "same.txt").write_text(folder)
    clash = run_cli(
        tmp_path, "upload", str(tmp_path / "a" / "same.txt"), str(tmp_path / "b" / "same.txt"),
        "--url", server.url,
    )  # fmt: skip
    assert clash.returncode == 2
    assert "would both be uploaded to same.txt" in clash.stderr
    assert not staged(server, "alice", "same.txt").exists()
    refused = run_cli(
        tmp_path, "upload", str(tmp_path / "a" / "same.txt"), "--url", server.url,
        TUS_STAGING_TOKEN="not-a-token",
    )  # fmt: skip
    assert refused.returncode == 1
    assert f"failed: {tmp_path / 'a' / 'same.txt'}: 401: " in refused.stderr
    unsafe = run_cli(tmp_path, "upload", str(tmp_path / "a"), "--url", server.url, "--dest", "..")
    assert unsafe.returncode == 1
    assert "failed: " in unsafe.stderr and ": 400: " in unsafe.stderr
    usage = run_cli(tmp_path, "upload", str(tmp_path / "a"))  # no --url, none in the environment
    assert usage.returncode == 2
    assert "--url" in usage.stderr
    bad_url = run_cli(tmp_path, "upload", str(tmp_path / "a"), "--url", "ftp://host/")
    assert bad_url.returncode == 2
    unreachable = run_cli(
        tmp_path, "upload", str(tmp_path / "a"), "--url", "http://127.0.0.1:9",
        "--retry-delay", "0.001",
    )  # fmt: skip
    assert unreachable.returncode == 1
    assert "cannot reach 127.0.0.1:9" in unreachable.stderr


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGKILL])
def test_interrupted_upload_resumes_when_run_again(
    server: ServerProcess, tmp_path: Path, stop: signal.Signals
) -> None:
    source = tmp_path / "batch"
    source.mkdir()
    sizes = [9_000_000, 7_000_000, 5_000_000]
    for index, size in enumerate(sizes):
        (source / f"part{index}.bin").write_bytes(os.urandom(size))
    total = sum(sizes)
    # Throttled, so that the stop lands mid-batch: unthrottled, the last 15 MB can arrive
    # in the 20 ms between two looks at the counter (seen on a fast machine).
    with FaultProxy(server.url, default=throttle(10_000_000)) as proxy:
        args = ("upload", str(source), "--url", proxy.url, "--chunk-size", "1M")
        first = start_cli(tmp_path, *args)
        wait_until(lambda: bytes_received(server) >= 6_000_000, 60, "6 MB at the server")
        first.send_signal(stop)
        _, stderr = first.communicate(timeout=30)
        if stop == signal.SIGINT:
            assert first.returncode == 130
            assert "run the same command again to resume" in stderr
        before_second = bytes_received(server)
        assert 0 < before_second < total
        proxy.default = passthrough()  # full speed from here on
        second = OnTerminal(tmp_path, *args)
        assert second.wait() == 0, second.output
    assert bytes_received(server) - before_second < total  # it resumed instead of starting over
    assert "resumed at" in second.output
    assert re.search(r"3 files, .* [1-3] resumed$", second.output.strip()), second.output
    assert percentages(second.output)[-1] == 100  # the resumed bytes count as done
    for index in range(len(sizes)):
        assert md5_of(staged(server, "alice", f"batch/part{index}.bin")) == md5_of(
            source / f"part{index}.bin"
        )


@pytest.mark.parametrize("case", ["other file, other dest", "same file, other dest", "other url"])
def test_a_resume_never_crosses_files_destinations_or_servers(
    server: ServerProcess, tmp_path: Path, case: str
) -> None:
    # Two files with the same first 64 KiB and the same size: a fingerprint alone cannot
    # tell them apart. An interrupted upload of one must never take in the other's bytes,
    # nor the same file bound elsewhere, nor go to another server URL.
    header = os.urandom(64 * 1024)
    a, b = tmp_path / "a" / "run.dat", tmp_path / "b" / "other.dat"
    for path in (a, b):
        path.parent.mkdir()
        path.write_bytes(header + os.urandom(MiB - len(header)))
    with FaultProxy(server.url, default=throttle(1_000_000)) as proxy:
        first_args = ("upload", str(a), "--dest", "cliA", "--chunk-size", "256K")
        first = start_cli(tmp_path, *first_args, "--url", proxy.url)
        wait_until(lambda: bytes_received(server) >= 256 * 1024, 30, "a first chunk")
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=30)
        assert 0 < bytes_received(server) < MiB
        proxy.default = passthrough()  # full speed from here on
        source, dest, url = {
            "other file, other dest": (b, "cliB", proxy.url),
            "same file, other dest": (a, "cliB", proxy.url),
            "other url": (a, "cliA", server.url),
        }[case]
        connections = len(proxy.connections)
        second = run_cli(tmp_path, "upload", str(source), "--dest", dest, "--url", url)
        assert second.returncode == 0, second.stderr
        assert "resumed at" not in second.stderr
        assert md5_of(staged(server, "alice", f"{dest}/{source.name}")) == md5_of(source)
        if url == server.url:  # nothing, not even a HEAD with the token, to the other URL
            assert len(proxy.connections) == connections
        again = run_cli(tmp_path, *first_args, "--url", proxy.url)
    assert again.returncode == 0, again.stderr
    assert "resumed at" in again.stderr
    assert md5_of(staged(server, "alice", "cliA/run.dat")) == md5_of(a)


def test_a_remembered_upload_is_checked_with_the_server_first(
    server: ServerProcess, tmp_path: Path
) -> None:
    alice = TusTestClient(server.files_url, TOKENS["alice"])
    store = ResumeStore(tmp_path / "cache" / "tus-staging" / "uploads.json")
    for case in ("other length", "other destination", "deleted", "same"):
        data = tmp_path / f"{case.replace(' ', '-')}.bin"
        data.write_bytes(os.urandom(300_000))
        length = 200_000 if case == "other length" else 300_000
        folder = "else" if case == "other destination" else "inbox"
        url = alice.create_url(length, data.name, destPath=folder)
        if case == "deleted":
            assert alice.delete(url).status_code == 204
        if case == "same":
            assert alice.patch(url, 0, data.read_bytes()[:100_000]).status_code == 204
        job = files_to_upload([data], "inbox")[0]
        store.put(upload_key(server.files_url, TOKENS["alice"], job), {"url": url})
        result = run_cli(tmp_path, "upload", str(data), "--url", server.url, "--dest", "inbox")
        assert result.returncode == 0, (case, result.stderr)
        assert md5_of(staged(server, "alice", f"inbox/{data.name}")) == md5_of(data), case
        assert ("resumed at 100000 bytes" in result.stderr) == (case == "same"), case
        if case.startswith("other"):
            assert alice.offset(url) == 0, case  # the other upload was left alone


def test_a_link_cut_mid_body_is_retried_from_the_servers_offset(
    server: ServerProcess, tmp_path: Path
) -> None:
    data = tmp_path / "cut.bin"
    data.write_bytes(os.urandom(8 * MiB))
    with FaultProxy(server.url) as proxy:
        proxy.plan(passthrough(), cut_after(3 * MiB))  # the OPTIONS probe; the first PATCH's
        result = run_cli(
            tmp_path, "upload", str(data), "--url", proxy.url, "--chunk-size", "1G",
            "--retry-delay", "0.05",
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert md5_of(staged(server, "alice", "cut.bin")) == md5_of(data)
    patches = [int(line["bytes"]) for line in access_log(server) if line["method"] == "PATCH"]
    # The second PATCH sent only what the first had not delivered: nothing twice.
    assert len(patches) == 2 and 0 < patches[0] < 3 * MiB and sum(patches) == 8 * MiB


def test_upload_retries_through_a_redis_outage(
    server: ServerProcess, tmp_path: Path, redis_proc: RedisProcess
) -> None:
    data = tmp_path / "patient.bin"
    data.write_bytes(os.urandom(4_000_000))
    redis_proc.stop()
    run = start_cli(tmp_path, "upload", str(data), "--url", server.url, "--retry-delay", "0.3")
    time.sleep(2)  # the client meets 503s and backs off
    assert run.poll() is None
    redis_proc.start()
    _, stderr = run.communicate(timeout=120)
    assert run.returncode == 0, stderr
    assert md5_of(staged(server, "alice", "patient.bin")) == md5_of(data)


def test_upload_with_checksum(server: ServerProcess, tmp_path: Path) -> None:
    data = tmp_path / "checked.bin"
    data.write_bytes(os.urandom(3_000_000))
    result = run_cli(
        tmp_path, "upload", str(data), "--checksum", "--chunk-size", "1M", "--url", server.url
    )
    assert result.returncode == 0, result.stderr
    assert md5_of(staged(server, "alice", "checked.bin")) == md5_of(data)


def uploads_logged(server: ServerProcess) -> list[str]:
    """Methods of the requests logged on the tus endpoint, but the OPTIONS probes."""
    return [line["method"] for line in access_log(server) if line["method"] != "OPTIONS"]


def percentages(output: str) -> list[int]:
    return [int(p) for p in re.findall(r"total:\s+(\d+)%", output)]


def test_progress_moves_while_one_large_patch_is_on_the_wire(
    server: ServerProcess, tmp_path: Path
) -> None:
    big = tmp_path / "big.bin"
    with open(big, "wb") as handle:
        handle.truncate(512 * MiB)  # sparse: made at once, read at memory speed
    # 30 MB/s: 1 % of the file every ~0.2 s, whatever this machine's speed.
    with FaultProxy(server.url, default=throttle(30_000_000)) as proxy:
        run = OnTerminal(tmp_path, "upload", str(big), "--url", proxy.url, "--chunk-size", "1G")
        wait_until(lambda: len(set(percentages(run.output)) - {0}) >= 4, 60, "4 percentages")
        in_flight = uploads_logged(server)
        run.process.send_signal(signal.SIGINT)
        assert run.wait() == 130
    # The percentages moved while the one PATCH had not ended: the server had logged only
    # the creation then; the PATCH is logged once the client has gone.
    assert in_flight == ["POST"], in_flight
    wait_until(lambda: len(uploads_logged(server)) == 2, 30, "the PATCH's log line")
    patch = next(line for line in access_log(server) if line["method"] == "PATCH")
    assert 0 < int(patch["bytes"]) < 512 * MiB
    seen = percentages(run.output)
    assert seen == sorted(seen) and max(seen) < 100


def test_parallel_uploads_overlap_and_the_total_reaches_100(
    server: ServerProcess, tmp_path: Path
) -> None:
    source = tmp_path / "eight"
    source.mkdir()
    for index in range(8):
        (source / f"f{index}.bin").write_bytes(os.urandom(1_500_000))
    # Each connection at 2 MB/s: one file takes ~0.75 s, long beside the log's milliseconds.
    with FaultProxy(server.url, default=throttle(2_000_000)) as proxy:
        run = OnTerminal(tmp_path, "upload", str(source), "--url", proxy.url, "--parallel", "4")
        assert run.wait() == 0, run.output
    patches = [line for line in access_log(server) if line["method"] == "PATCH"]
    assert len(patches) == 8 and {line["status"] for line in patches} == {"204"}
    events = sorted(
        [(line["start"], 1) for line in patches] + [(line["end"], -1) for line in patches]
    )  # an end sorts before a start at the same instant
    running, most = 0, 0
    for _, change in events:
        running += change
        most = max(most, running)
    assert most == 4
    assert percentages(run.output)[-1] == 100
    assert re.search(r"8 files, 11\.4 MiB \(11\.4 MiB sent\) in .* 0 resumed", run.output)
    for index in range(8):
        assert md5_of(staged(server, "alice", f"eight/f{index}.bin")) == md5_of(
            source / f"f{index}.bin"
        )
