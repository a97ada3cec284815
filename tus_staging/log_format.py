"""Log lines a client cannot forge: every record is one line that starts with its time.

Paths, header values, user names and reasons come from clients. In the text format each
non-printable character of a field (a line break, a carriage return, a bidi override) is
written as a backslash escape, and a value with a space, a quote, an ``=`` or a backslash
is quoted, so that ``key=value`` pairs stay unambiguous; the lines of a traceback that
follow a record are indented. In the JSON format the encoder escapes control characters;
what it leaves raw and some readers still take for a line break (U+0085, U+2028, …) is
escaped here too.
"""

from __future__ import annotations

import json
import logging
import re
import sys

from protocol.errors import one_line

TEXT_LINE = "%(asctime)s %(levelname)s %(name)s %(message)s"
CONTINUATION = "    "  # before each further line of a record (a traceback): never a record
_QUOTE_IF = re.compile(r'[ "=\\]')


def escaped(text: str) -> str:
    """``text`` with every non-printable character as a backslash escape: one line."""
    return text if text.isprintable() else one_line(text, limit=sys.maxsize)


def text_value(value: object) -> str:
    """One ``key=value`` value: bare when plain, else quoted with ``\\`` and ``"`` escaped."""
    text = str(value)
    if text and text.isprintable() and not _QUOTE_IF.search(text):
        return text
    return '"' + escaped(text.replace("\\", "\\\\").replace('"', '\\"')) + '"'


def json_line(fields: dict[str, object]) -> str:
    """``fields`` as one JSON line, readable UTF-8, with no raw non-printable character."""
    line = json.dumps(fields, ensure_ascii=False)
    if line.isprintable():
        return line
    # Only possible inside strings, where a \\u escape means the same character.
    return "".join(char if char.isprintable() else json.dumps(char)[1:-1] for char in line)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(TEXT_LINE)

    def format(self, record: logging.LogRecord) -> str:
        access = getattr(record, "access", None)
        if access is not None:
            message = " ".join(
                f"{key}={text_value(value)}"
                for key, value in access.items()
                if value not in (None, "")
            )
        else:
            message = escaped(record.getMessage())
        one = logging.makeLogRecord({**record.__dict__, "msg": message, "args": ()})
        first, *more = super().format(one).split("\n")
        return "\n".join([first, *(CONTINUATION + escaped(line) for line in more)])


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
        }
        access = getattr(record, "access", None)
        if access is not None:
            line.update(access)
        else:
            line["message"] = record.getMessage()
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json_line(line)


def configure_logging(level: str, log_format: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").disabled = True  # replaced by tus_staging.access
