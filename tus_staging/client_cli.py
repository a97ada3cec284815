"""The client subcommands' parsers and how their outcomes become exit statuses.

``add_client_commands`` adds ``upload``, ``ls``, ``info``, ``get``, ``mv``, ``rm`` and
``mkdir`` to the top-level parser; ``run_client_command`` runs the one chosen. Nothing
heavy is imported until a command runs, so ``--help`` stays quick.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable
from pathlib import Path

OK = 0
FAILED = 1  # the server refused, could not be reached, a check failed, some files failed
USAGE = 2  # bad arguments, a path that does not exist, a request the server calls malformed
INTERRUPTED = 130  # Ctrl-C, as the shell reports it
NOT_FOUND_OR_MALFORMED = (400, 404)

EXIT_STATUS_HELP = """\
exit status: 0 done; 1 failed (refused by the server, unreachable, md5 mismatch, some
files failed); 2 usage error, or a path that does not exist; 130 interrupted (Ctrl-C)."""

# command: (module:function, help line, description, examples)
COMMANDS: dict[str, tuple[str, str, str, str]] = {
    "upload": (
        "upload_command:upload",
        "upload files or folders (resumable)",
        """\
Upload files and folders over tus into your staging area. A folder is sent with its
structure (the folder itself and everything below it). Run the same command again after
a failure, a dropped link or Ctrl-C and each file continues where it stopped: the upload
is remembered under ~/.cache/tus-staging (XDG_CACHE_HOME) for this server, this token,
this destination and this local file as it is now (path, size, mtime).""",
        """\
examples:
  export TUS_STAGING_URL=https://staging.example.org TUS_STAGING_TOKEN=...
  tus-staging upload reads.fastq.gz
  tus-staging upload ./run7 notes.txt --dest incoming --parallel 4
  tus-staging upload big.tar --url http://127.0.0.1:1080/files/ --chunk-size 256M""",
    ),
    "ls": (
        "area_commands:ls",
        "list a folder of your staging area",
        "List one folder of your staging area (your home when PATH is not given): size,\n"
        "modification time and name, folders first and marked with '/'.",
        """\
examples:
  tus-staging ls
  tus-staging ls run7/raw
  tus-staging ls run7 --json""",
    ),
    "info": (
        "area_commands:info",
        "show a file's metadata record (md5, lines, head, tail)",
        "Show the metadata record of a file or folder: size, mtime, md5, line count,\n"
        "text or binary, the first and last lines, where it came from.",
        """\
examples:
  tus-staging info run7/reads.fastq
  tus-staging info run7/reads.fastq --json""",
    ),
    "get": (
        "download_command:download",
        "download a file (resumable, md5-checked)",
        """\
Download a file into DEST (a file name, or a folder to put it in; default: the current
folder). The bytes go into DEST.part first; run the same command again after an
interruption and it continues from there. The md5 of the whole file is checked against
the server's record before the file is renamed into place.""",
        """\
examples:
  tus-staging get run7/reads.fastq
  tus-staging get run7/reads.fastq /scratch/
  tus-staging get run7/reads.fastq copy.fastq""",
    ),
    "mv": (
        "area_commands:mv",
        "move or rename a file or folder",
        "Move or rename a file or folder. A DST that is an existing folder, or ends with\n"
        "'/', receives SRC under its own name. An existing file is never replaced.",
        """\
examples:
  tus-staging mv run7/notes.txt run7/README.txt
  tus-staging mv run7/notes.txt archive/""",
    ),
    "rm": (
        "area_commands:rm",
        "delete a file (or a folder, with -r)",
        "Delete a file, or a folder with everything in it (-r). Without -r a folder is\n"
        "refused before anything is deleted.",
        """\
examples:
  tus-staging rm run7/notes.txt
  tus-staging rm -r run7""",
    ),
    "mkdir": (
        "area_commands:mkdir",
        "make a folder (and its parents)",
        "Make a folder, with the folders above it; an existing folder is fine.",
        """\
examples:
  tus-staging mkdir run8/raw""",
    ),
}
RESUMABLE = ("upload", "get")


def byte_count(text: str) -> int:
    from .cli import byte_size

    size = byte_size(text)
    if size < 1:
        raise argparse.ArgumentTypeError("must be at least 1 byte")
    return size


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def add_client_commands(commands: argparse._SubParsersAction) -> None:
    """Add the client subcommands (the subparsers' class reads TUS_STAGING_* defaults)."""
    parsers = {}
    for name, (_, help_line, description, examples) in COMMANDS.items():
        parsers[name] = commands.add_parser(
            name,
            help=help_line,
            description=description,
            epilog=f"{examples}\n\n{EXIT_STATUS_HELP}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
    upload, ls, info, get, mv, rm, mkdir = parsers.values()

    upload.add_argument(
        "paths", nargs="+", type=Path, metavar="FILE|DIR", help="local files and folders"
    )
    get.add_argument("path", metavar="PATH", help="a file in your staging area")
    get.add_argument("dest", metavar="DEST", nargs="?", help="local file or folder")
    ls.add_argument("path", metavar="PATH", nargs="?", default="", help="default: your home")
    info.add_argument("path", metavar="PATH", help="a file or folder in your staging area")
    mv.add_argument("source", metavar="SRC", help="what to move")
    mv.add_argument("target", metavar="DST", help="its new path, or a folder to move it into")
    rm.add_argument("path", metavar="PATH", help="what to delete")
    mkdir.add_argument("path", metavar="PATH", help="the folder to make")

    for parser in parsers.values():
        add_server_flags(parser)
    for parser in (ls, info, mkdir):
        parser.add_argument("--json", action="store_true", help="print the record(s) as JSON")
    ls.add_argument("-a", "--all", action="store_true", help="include names starting with '.'")
    # No long form: a long flag would also read TUS_STAGING_RECURSIVE, and no variable
    # left in an environment should turn every rm into a tree delete.
    rm.add_argument("-r", dest="recursive", action="store_true", help="delete folders too")
    upload.add_argument("--dest", default="", help="folder in your staging area (default: home)")
    upload.add_argument(
        "--parallel", type=positive, default=1, metavar="N", help="files at once (default 1)"
    )
    upload.add_argument(
        "--chunk-size", type=byte_count, default=64 * 1024 * 1024, metavar="SIZE",
        help="largest request body, e.g. 64M (default); a proxy may limit it",
    )  # fmt: skip
    upload.add_argument(
        "--checksum", action="store_true", help="send a sha1 Upload-Checksum with every chunk"
    )
    for parser in (upload, get):
        parser.add_argument(
            "--retry-delay", type=float, default=1.0, metavar="SECONDS",
            help="first retry delay in seconds (doubles each try, 8 tries)",
        )  # fmt: skip


def add_server_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url",
        required=True,  # unless the environment gives it (EnvDefaults)
        help="the server's base URL, e.g. http://127.0.0.1:1080"
        + (" (or its tus endpoint, .../files/)" if parser.prog.endswith("upload") else ""),
    )
    parser.add_argument("--token", help="your token (prefer the environment: a flag shows in ps)")


def run_client_command(args: argparse.Namespace) -> int:
    from .client_http import ServerError

    module_name, _, function_name = COMMANDS[args.command][0].partition(":")
    module = importlib.import_module(f".{module_name}", __package__)
    command: Callable[[argparse.Namespace], int] = getattr(module, function_name)
    try:
        return command(args)
    except KeyboardInterrupt:
        hint = ": run the same command again to resume" if args.command in RESUMABLE else ""
        print(f"\ninterrupted{hint}", file=sys.stderr)
        return INTERRUPTED
    except ServerError as error:
        report(args.command, str(error))
        return USAGE if error.status in NOT_FOUND_OR_MALFORMED else FAILED
    except ValueError as error:  # a malformed --url, a path with ".."
        report(args.command, str(error))
        return USAGE
    except OSError as error:  # the local side: a folder that cannot be written, a full disk
        report(args.command, f"{error.filename or ''}: {error.strerror or error}".lstrip(": "))
        return FAILED


def report(command: str, message: str) -> None:
    from .progress import printable

    print(f"tus-staging {command}: {printable(message)}", file=sys.stderr)
