"""The file name a Content-Disposition field gives (RFC 6266, with RFC 8187 ``filename*``).

The IETF resumable-upload draft lets a client name the file it uploads with
``Content-Disposition: inline; filename="a.txt"; filename*=UTF-8''a.txt``. ``filename*``
(any Unicode, percent-encoded) is preferred over ``filename`` (a token or quoted string);
a ``filename*`` in a charset other than UTF-8 or ISO-8859-1 is passed over for
``filename``, as RFC 6266 asks. Names are returned as sent: the path policy
(protocol/paths.py) decides whether they may land. A field that does not follow the
grammar is refused (400) with the reason: guessing at a file name could stage a file
under a name its owner never gave.
"""

from __future__ import annotations

import string
from urllib.parse import quote, unquote_to_bytes

from protocol.errors import BadRequest, quoted
from protocol.headers import OWS

FIELD = "Content-Disposition"
_TCHARS = frozenset(string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~")
_ATTR_CHARS = frozenset(string.ascii_letters + string.digits + "!#$&+-.^_`|~")
_HEX = frozenset(string.hexdigits)
CHARSETS = {"utf-8": "utf-8", "iso-8859-1": "latin-1"}


class _Reader:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip_ows(self) -> None:
        while self.peek() and self.peek() in OWS:
            self.pos += 1

    def refuse(self, what: str) -> BadRequest:
        return BadRequest(f"{FIELD} is malformed ({what}): {quoted(self.text)}")

    def token(self, what: str) -> str:
        start = self.pos
        while self.peek() and self.peek() in _TCHARS:
            self.pos += 1
        if self.pos == start:
            raise self.refuse(f"{what} expected at position {start}")
        return self.text[start : self.pos]

    def quoted_string(self) -> str:
        self.pos += 1  # the opening quote
        chars: list[str] = []
        while True:
            char = self.peek()
            if not char:
                raise self.refuse("a quoted string is not closed")
            self.pos += 1
            if char == '"':
                return "".join(chars)
            if char == "\\":
                char = self.peek()
                if not char:
                    raise self.refuse("a quoted string is not closed")
                self.pos += 1
            if char != "\t" and (char < " " or char == "\x7f"):
                raise self.refuse("a control character")
            chars.append(char)

    def value(self) -> str:
        return self.quoted_string() if self.peek() == '"' else self.token("a value")


def _decode_ext_value(reader: _Reader, text: str) -> str | None:
    """An RFC 8187 ext-value; None when its charset is one we do not read."""
    parts = text.split("'")
    if len(parts) != 3 or not parts[0]:
        raise reader.refuse("filename* is charset'language'value")
    charset, _language, encoded = parts
    index = 0
    while index < len(encoded):
        char = encoded[index]
        if char == "%":
            if len(encoded) < index + 3 or not set(encoded[index + 1 : index + 3]) <= _HEX:
                raise reader.refuse("a bad percent escape in filename*")
            index += 3
            continue
        if char not in _ATTR_CHARS:
            raise reader.refuse(f"{char!r} must be percent-encoded in filename*")
        index += 1
    codec = CHARSETS.get(charset.lower())
    if codec is None:
        return None
    try:
        return unquote_to_bytes(encoded).decode(codec)
    except UnicodeDecodeError:
        raise reader.refuse(f"filename* is not valid {charset}") from None


def disposition_filename(text: str) -> str | None:
    """The file name ``text`` gives (``filename*`` preferred), or None when it gives none."""
    reader = _Reader(text)
    reader.skip_ows()
    reader.token("a disposition type")
    parameters: dict[str, str] = {}
    while True:
        reader.skip_ows()
        if not reader.peek():
            break
        if reader.peek() != ";":
            raise reader.refuse(f"';' expected at position {reader.pos}")
        reader.pos += 1
        reader.skip_ows()
        if not reader.peek():
            break  # a trailing ';'
        name = reader.token("a parameter name").lower()
        reader.skip_ows()
        if reader.peek() != "=":
            raise reader.refuse(f"'=' expected after {name}")
        reader.pos += 1
        reader.skip_ows()
        value = reader.token("an ext-value") if name.endswith("*") else reader.value()
        if name in parameters:
            raise reader.refuse(f"{name} given twice")
        parameters[name] = value
    if "filename*" in parameters:
        name = _decode_ext_value(reader, parameters["filename*"])
        if name is not None:
            return name
    return parameters.get("filename")


def attachment(name: str) -> str:
    """A Content-Disposition that downloads as ``name`` (any Unicode, as filename*)."""
    return f"attachment; filename*=UTF-8''{quote(name, safe='', errors='surrogatepass')}"
