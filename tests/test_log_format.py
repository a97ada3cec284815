"""Log lines a client cannot forge: control characters in any logged field stay escaped in
one line, in the text format and in JSON, and a text value reads back as it came."""

from __future__ import annotations

import base64
import json
import logging
import re
import sys

from hypothesis import given
from hypothesis import strategies as st

from tus_staging.log_format import (
    CONTINUATION,
    JsonFormatter,
    TextFormatter,
    json_line,
    text_value,
)

from .raw_http import raw_status

# What Python's str.splitlines() (and so many log readers) takes for a line break.
LINE_BREAKS = "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"
NASTY = [*LINE_BREAKS, "\x1b", "\\", '"', "=", " ", "a", "é", "\u202e"]
hostile_text = st.text(alphabet=st.sampled_from(NASTY) | st.characters())


def read_back(value: str) -> str:
    """A text-format value as it was logged (the inverse of text_value)."""
    if not value.startswith('"'):
        return value
    inner = value[1:-1]
    return inner.encode("ascii", "backslashreplace").decode("unicode_escape")


@given(hostile_text)
def test_a_text_value_is_one_printable_token_that_reads_back(text: str) -> None:
    value = text_value(text)
    assert value.isprintable()
    assert len(value.splitlines()) <= 1
    assert read_back(value) == text
    if value.startswith('"'):  # quoted: no unescaped quote inside, so a reader finds its end
        assert re.fullmatch(r'"(?:[^"\\]|\\.)*"', value)
    else:
        assert " " not in value and "=" not in value


def access_record(fields: dict[str, object]) -> logging.LogRecord:
    record = logging.makeLogRecord(
        {"name": "tus_staging.access", "levelname": "INFO", "msg": "%s", "args": (fields,)}
    )
    record.access = fields
    return record


@given(st.dictionaries(st.sampled_from(["path", "user", "reason", "upload_id"]), hostile_text))
def test_an_access_record_is_one_line_in_both_formats(fields: dict[str, object]) -> None:
    record = access_record(fields)
    text = TextFormatter().format(record)
    assert len(text.splitlines()) == 1
    line = JsonFormatter().format(record)
    assert len(line.splitlines()) == 1
    parsed = json.loads(line)
    assert {key: parsed[key] for key in fields} == fields


@given(hostile_text)
def test_any_other_record_is_one_line_and_its_traceback_is_indented(text: str) -> None:
    try:
        raise ValueError(text)
    except ValueError:
        exc_info = sys.exc_info()
    record = logging.makeLogRecord({"name": "tus_staging", "levelname": "WARNING",
                                    "msg": "redis unavailable during %s", "args": (text,),
                                    "exc_info": exc_info})  # fmt: skip
    first, *rest = TextFormatter().format(record).split("\n")
    assert len(first.splitlines()) == 1
    assert rest and all(line.startswith(CONTINUATION) for line in rest)
    assert all(len(line.splitlines()) == 1 for line in rest)
    assert len(JsonFormatter().format(record).splitlines()) == 1


def test_json_line_escapes_what_the_encoder_leaves_raw() -> None:
    line = json_line({"path": "/a\u2028b\x85c\u202ed"})
    assert line == '{"path": "/a\\u2028b\\u0085c\\u202ed"}'
    assert json.loads(line) == {"path": "/a\u2028b\x85c\u202ed"}


# --- the real server's log -------------------------------------------------------------------

TIMESTAMPED = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ ")
FORGED_PATH = "/x%0a2030-01-01%2000:00:00,000%20INFO%20tus_staging.access%20forged%0d%1b[2K"


def test_a_forged_path_or_header_writes_no_line_into_the_text_log(make_server) -> None:
    server = make_server()
    start = server.log_path.stat().st_size
    host = f"Host: 127.0.0.1:{server.port}\r\n".encode()
    raw_status(server, b"GET " + FORGED_PATH.encode() + b" HTTP/1.1\r\n" + host + b"\r\n")
    # A header value (a file name in Upload-Metadata) echoed in a refusal's reason.
    name = base64.b64encode(b"x\n2030-01-01 00:00:00,000 INFO forged").decode()
    head = (b"POST /files/ HTTP/1.1\r\n" + host + b"Tus-Resumable: 1.0.0\r\n"
            b"Authorization: tok-alice\r\nUpload-Length: 1\r\nContent-Length: 0\r\n"
            b"Upload-Metadata: filename " + name.encode() + b"\r\n\r\n")  # fmt: skip
    assert raw_status(server, head) == 400
    lines = server.log_path.read_bytes()[start:].decode().split("\n")[:-1]
    assert len(lines) == 2, lines
    assert all(TIMESTAMPED.match(line) for line in lines), lines
    assert r'path="/x\n2030-01-01 00:00:00,000 INFO tus_staging.access forged\r\x1b[2K"' in lines[0]


def test_the_json_log_keeps_a_forged_path_in_its_field(make_server) -> None:
    server = make_server("--log-format", "json")
    start = server.log_path.stat().st_size
    host = f"Host: 127.0.0.1:{server.port}\r\n".encode()
    raw_status(server, b"GET " + FORGED_PATH.encode() + b" HTTP/1.1\r\n" + host + b"\r\n")
    lines = server.log_path.read_bytes()[start:].decode().split("\n")[:-1]
    assert len(lines) == 1
    assert json.loads(lines[0])["path"].startswith("/x\n2030-01-01 00:00:00,000 INFO")
