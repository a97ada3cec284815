"""``ls``, ``info``, ``mv``, ``rm``, ``mkdir``: the staging area from the command line.

Each takes the parsed arguments and returns the exit status; a refusal of the server
is raised (ServerError) for client_cli to report.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from .client_cli import OK, USAGE, report
from .client_http import ServerError, base_url, new_session
from .progress import human_bytes, printable
from .staging_client import Record, StagingClient, area_path
from .tus_client import is_tus_endpoint

BAD_REQUEST = 400
LONG_FIELDS = ("head", "tail")  # printed as indented blocks by `info`


def client_for(args: argparse.Namespace) -> StagingClient:
    """A client of the server at ``--url``; ValueError when that names the tus endpoint
    (which ``upload`` takes, so one URL in the environment may be meant for both)."""
    url = base_url(args.url)
    session = new_session(args.token)
    # Only a URL with a path can be the endpoint: the probe costs nothing otherwise.
    if urlsplit(url).path and is_tus_endpoint(session, url):
        raise ValueError(
            f"--url {url}/ is the tus endpoint: {args.command} takes the server's base URL"
            f" ({url.rsplit('/', 1)[0]}), and so does upload"
        )
    return StagingClient(url, session)


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


def when(mtime_ms: object) -> str:
    if not isinstance(mtime_ms, int | float):
        return "-"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(mtime_ms / 1000))


def listing_line(entry: Record) -> str:
    folder = bool(entry.get("isFolder"))
    size = "-" if folder else human_bytes(int(entry.get("size") or 0))
    name = printable(str(entry.get("name", ""))) + ("/" if folder else "")
    return f"{size:>10}  {when(entry.get('mtime'))}  {name}"


def ls(args: argparse.Namespace) -> int:
    client = client_for(args)
    try:
        entries = client.list(args.path, show_hidden=args.all)
    except ServerError as error:
        # A file rather than a folder: show its own line, as ls does.
        entries = _the_file(client, args.path) if error.status == BAD_REQUEST else None
        if not entries:
            raise
    if args.json:
        print_json(entries)
    else:
        for entry in entries:
            print(listing_line(entry))
    return OK


def _the_file(client: StagingClient, path: str) -> list[Record]:
    """The file named ``path`` as its folder lists it (hidden or not: it was named)."""
    target = PurePosixPath(area_path(path) or ".")
    if str(target) == ".":
        return []
    siblings = client.list(str(target.parent), show_hidden=True)
    return [e for e in siblings if e.get("name") == target.name and not e.get("isFolder")]


def info(args: argparse.Namespace) -> int:
    record = client_for(args).metadata(args.path)
    if args.json:
        print_json(record)
        return OK
    width = max((len(str(key)) for key in record), default=0) + 1
    for key, value in record.items():
        label = f"{printable(str(key))}:".ljust(width)
        if key in LONG_FIELDS and isinstance(value, str) and "\n" in value:
            print(label.rstrip())
            for line in value.splitlines():
                print("    " + printable(line))
        elif key == "mtime":
            print(f"{label} {value} ({when(value)})")
        elif key == "size" and isinstance(value, int):
            print(f"{label} {value} ({human_bytes(value)})")
        else:
            text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
            print(f"{label} {printable(text)}")
    return OK


def mv(args: argparse.Namespace) -> int:
    client = client_for(args)
    target = area_path(args.target)
    # Into a folder, as mv does: a target that ends in "/" or is an existing folder.
    if args.target.endswith("/") or (target and client.existence(target).get("isFolder")):
        target = str(PurePosixPath(target or ".") / PurePosixPath(area_path(args.source)).name)
    client.move(args.source, target)
    print(f"moved {printable(area_path(args.source))} -> {printable(target)}")
    return OK


def rm(args: argparse.Namespace) -> int:
    client = client_for(args)
    path = area_path(args.path)
    found = client.existence(path)
    if not found.get("exists"):
        raise ServerError(404, f"{path or '/'} does not exist")
    if found.get("isFolder") and not args.recursive:
        report("rm", f"{path or '/'} is a folder: use rm -r to delete it")
        return USAGE
    client.delete(path)
    print(f"deleted {printable(path)}{'/' if found.get('isFolder') else ''}")
    return OK


def mkdir(args: argparse.Namespace) -> int:
    created, record = client_for(args).mkdir(args.path)
    if args.json:
        print_json(record)
    else:
        print(f"{'created' if created else 'exists:'} {printable(area_path(args.path))}/")
    return OK
