"""The command line: the server (``serve``, ``cleanup``) and its client (see client_cli.py).

Every flag also reads from ``TUS_STAGING_<FLAG>`` (upper case, ``-`` → ``_``); a flag
given on the command line wins over the environment.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from .client_cli import COMMANDS as CLIENT_COMMANDS
from .client_cli import add_client_commands, run_client_command
from .config import Config, MiB

ENV_PREFIX = "TUS_STAGING_"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # see tus_staging/metrics.py
DESCRIPTION = """\
A resumable-upload server (tus 1.0.0) for a per-user staging area, and its client:
upload, list, inspect, download, move and delete files in your staging area."""
EXAMPLES = """\
examples:
  tus-staging serve                               # single user, http://127.0.0.1:1080
  tus-staging serve --host 0.0.0.0 --tokens-file tokens.txt
  export TUS_STAGING_URL=http://127.0.0.1:1080 TUS_STAGING_TOKEN=...
  tus-staging upload ./run7 --dest incoming --parallel 4
  tus-staging ls incoming/run7
  tus-staging get incoming/run7/reads.fastq

'tus-staging COMMAND --help' describes each command. Every flag can also be given as an
environment variable TUS_STAGING_<FLAG> (upper case, '-' as '_'); the flag wins."""


def env_name(flag: str) -> str:
    return ENV_PREFIX + flag.lstrip("-").upper().replace("-", "_")


class EnvDefaults(argparse.ArgumentParser):
    """An ArgumentParser whose option defaults come from TUS_STAGING_* variables."""

    def add_argument(self, *names: str, **kwargs):  # type: ignore[no-untyped-def,override]
        flag = next((n for n in names if n.startswith("--")), None)
        if flag is not None and kwargs.get("action") not in ("help", "version"):
            variable = env_name(flag)
            if variable in os.environ:
                raw = os.environ[variable]
                if kwargs.get("action") == "store_true":
                    kwargs["default"] = raw.strip().lower() in ("1", "true", "yes", "on")
                else:
                    kwargs["default"] = kwargs.get("type", str)(raw)
                kwargs["required"] = False  # the environment gave it
            kwargs["help"] = (kwargs.get("help") or "") + f" [env {variable}]"
        return super().add_argument(*names, **kwargs)


def byte_size(text: str) -> int:
    """1048576, 64K, 5M, 10G or 1T (binary units)."""
    units = {"K": 1024, "M": MiB, "G": 1024 * MiB, "T": 1024 * 1024 * MiB}
    text = text.strip().upper().removesuffix("B").removesuffix("I")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tus-staging",
        description=DESCRIPTION,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=EnvDefaults)

    serve = commands.add_parser("serve", help="run the upload server")
    serve.add_argument("--host", help="address to listen on")
    serve.add_argument("--port", type=int, help="port to listen on")
    add_storage_flags(serve)
    serve.add_argument("--workers", type=int, help="worker processes")
    serve.add_argument("--tokens-file", type=Path, help="lines of 'TOKEN USERNAME'")
    serve.add_argument("--auth-url", help="KBase auth2-style token validation URL")
    serve.add_argument("--max-size", type=byte_size, help="largest upload accepted, bytes")
    serve.add_argument(
        "--expire-after", type=float,
        help="seconds an unfinished upload is kept (default one week)",
    )  # fmt: skip
    serve.add_argument(
        "--keep-completed", type=float,
        help="seconds the record of a staged upload is kept (HEAD/GET on it; default a day)",
    )  # fmt: skip
    serve.add_argument(
        "--max-open-uploads", type=int,
        help="unfinished uploads one user may have (429 past it); 0 = no limit",
    )  # fmt: skip
    serve.add_argument(
        "--max-reserved", type=byte_size,
        help="bytes one user's unfinished uploads may reserve (507 past it); 0 = no limit",
    )  # fmt: skip
    serve.add_argument("--base-path", help="URL path of the tus endpoint")
    serve.add_argument("--sha256", action="store_true", help="also compute sha256")
    serve.add_argument(
        "--md5-kernel", metavar="NAME[:N]",
        help="md5 lanes kernel (avx512, avx2, portable; default the best this CPU runs), "
        "routed to from N streaming uploads: for benchmarks",
    )  # fmt: skip
    serve.add_argument(
        "--no-md5-lanes", action="store_true",
        help="hash md5 with libcrypto only, not in the multi-buffer lanes of concurrent uploads",
    )  # fmt: skip
    serve.add_argument(
        "--no-direct-io", action="store_true",
        help="write partial files through the page cache, not straight to the disk (O_DIRECT)",
    )  # fmt: skip
    serve.add_argument("--block-size", type=byte_size, help="bytes per write+hash block")
    serve.add_argument(
        "--checkpoint-bytes", type=byte_size,
        help="fsync and commit every this many bytes of a PATCH body",
    )  # fmt: skip
    serve.add_argument(
        "--network-timeout", type=float,
        help="seconds a client may stay silent mid-body: a tus PATCH then commits what came, "
        "any other request is answered 408",
    )  # fmt: skip
    serve.add_argument(
        "--keepalive-timeout", type=float,
        help="seconds an idle connection (or an unfinished request head) is kept",
    )  # fmt: skip
    serve.add_argument(
        "--lock-wait", type=float,
        help="seconds a request waits for a busy upload before answering 423",
    )  # fmt: skip
    serve.add_argument(
        "--wait-replicas", type=int,
        help="replicas that must acknowledge each upload state change before the client is "
        "answered, where the Redis master has replicas online (WAIT); 0 = never wait",
    )  # fmt: skip
    serve.add_argument(
        "--wait-replicas-timeout", type=float,
        help="seconds a state change waits for its replicas; past it the change stands on the "
        "master alone (counted in tus_staging_replica_waits_total)",
    )  # fmt: skip
    serve.add_argument(
        "--janitor-interval", type=float,
        help="seconds between janitor passes (expired uploads, stuck finalizes); 0 = off",
    )  # fmt: skip
    serve.add_argument(
        "--stuck-finalize-age", type=float,
        help="seconds after which the janitor completes a finalize whose request died",
    )  # fmt: skip
    serve.add_argument(
        "--behind-proxy", action="store_true",
        help="build upload URLs from Forwarded / X-Forwarded-Proto / X-Forwarded-Host",
    )  # fmt: skip
    serve.add_argument(
        "--cors-origins",
        help="comma-separated origins allowed by CORS (none by default); "
        "'*' any, only with --tokens-file or --auth-url",
    )  # fmt: skip
    serve.add_argument(
        "--allowed-hosts",
        help="comma-separated host names clients may reach the server by, besides localhost, "
        "loopback addresses and --host; checked in single-user mode, and in every mode when given",
    )  # fmt: skip
    serve.add_argument(
        "--max-client-connections", type=int,
        help="open connections one client address may hold, per worker process "
        "(default 64; without a cap behind a proxy); 0 = no cap",
    )  # fmt: skip
    serve.add_argument(
        "--cors-credentials", action="store_true",
        help="allow credentialed (cookie) cross-origin requests; needs explicit origins",
    )  # fmt: skip
    serve.add_argument(
        "--single-user",
        help="user name in single-user mode (no --tokens-file/--auth-url; loopback only)",
    )  # fmt: skip
    serve.add_argument(
        "--hook-pre-create", help="URL POSTed before an upload is created; non-2xx refuses it"
    )
    serve.add_argument(
        "--hook-post-finish", help="URL POSTed (with retries) after an upload is finished"
    )
    serve.add_argument(
        "--importer-mappings", type=Path,
        help="KBase's supported_apps_w_extensions.json, for /importer_filetypes/ and "
        "/importer_mappings/ (without it they answer 404)",
    )  # fmt: skip
    serve.add_argument(
        "--file-lifetime", type=int, help="days files are kept, as /file-lifetime tells"
    )
    serve.add_argument(
        "--decompress-max-bytes", type=byte_size,
        help="bytes one archive may expand to in /decompress (default 256G)",
    )  # fmt: skip
    serve.add_argument(
        "--decompress-max-members", type=int,
        help="files, folders and links one archive may hold in /decompress",
    )  # fmt: skip
    serve.add_argument("--log-level", help="DEBUG, INFO, WARNING, ERROR")
    serve.add_argument("--log-format", choices=("text", "json"), help="log line format")

    add_client_commands(commands)

    cleanup = commands.add_parser("cleanup", help="remove expired unfinished uploads now")
    add_storage_flags(cleanup)
    return parser


def add_storage_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=Path, help="data directory")
    parser.add_argument("--staging-dir", type=Path, help="default DATA/staging")
    parser.add_argument("--metadata-dir", type=Path, help="default DATA/metadata")
    parser.add_argument("--upload-dir", type=Path, help="default DATA/uploads")
    parser.add_argument(
        "--redis-url",
        help="external Redis: redis://, rediss://, unix://, a Redis Cluster node's URL, or "
        "redis+sentinel://[:PASSWORD@]HOST:PORT,HOST:PORT/MASTER[/DB]; "
        "default: embedded under DATA/redis",
    )


def config_from(args: argparse.Namespace) -> Config:
    fields = set(Config.__dataclass_fields__)
    return Config(**{k: v for k, v in vars(args).items() if k in fields and v is not None})


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        config = config_from(args)
        metrics_dir = None
        if config.workers > 1 and not os.environ.get(MULTIPROC_ENV):
            # Before prometheus_client is imported anywhere: workers share counters by files.
            metrics_dir = tempfile.mkdtemp(prefix="tus-staging-metrics-")
            os.environ[MULTIPROC_ENV] = metrics_dir
        from .log_format import configure_logging
        from .serve import serve

        configure_logging(config.log_level, config.log_format)
        try:
            return serve(config)
        finally:
            if metrics_dir is not None:
                shutil.rmtree(metrics_dir, ignore_errors=True)
    if args.command in CLIENT_COMMANDS:
        return run_client_command(args)
    if args.command == "cleanup":
        from .serve import cleanup

        return cleanup(config_from(args))
    return 2


if __name__ == "__main__":
    sys.exit(main())
