"""Structured Field Values for HTTP (RFC 8941): the parser and the serializer, no I/O.

The IETF resumable-upload draft defines its fields as structured fields: ``Upload-Complete``
is a Boolean item, ``Upload-Offset``, ``Upload-Length`` and ``Upload-Draft-Interop-Version``
are Integer items, ``Upload-Limit`` is a Dictionary. A value that does not parse is not an
error of the request: the draft says the whole field is then ignored. So the parsers here
raise :class:`InvalidField` (never anything else) and callers decide what ignoring means.

Parsed values: an item is ``(bare item, parameters)``; bare items are ``int``, ``Decimal``,
``str`` (a String), :class:`Token`, ``bytes`` (a Byte Sequence) and ``bool``; parameters
and dictionaries are dicts in the order the field gave them; an inner list is
``(list of items, parameters)``. The algorithms are RFC 8941 section 4.2, step by step.
"""

from __future__ import annotations

import base64
import binascii
import string
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import TypeAlias

from protocol.headers import OWS

MAX_INTEGER = 999_999_999_999_999  # 15 digits
_LCALPHA = frozenset(string.ascii_lowercase)
_DIGITS = frozenset(string.digits)
_KEY_START = _LCALPHA | {"*"}
_KEY_CHARS = _LCALPHA | _DIGITS | frozenset("_-.*")
_TOKEN_START = frozenset(string.ascii_letters) | {"*"}
# tchar (RFC 9110) plus ":" and "/"
_TOKEN_CHARS = frozenset(string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~:/")
_BASE64_CHARS = frozenset(string.ascii_letters + string.digits + "+/=")


class Token(str):
    """An sf-token, kept apart from an sf-string (both are text)."""


BareItem: TypeAlias = int | Decimal | str | bytes | bool
Parameters: TypeAlias = dict[str, BareItem]
Item: TypeAlias = tuple[BareItem, Parameters]
InnerList: TypeAlias = tuple[list[Item], Parameters]
Member: TypeAlias = Item | InnerList


class InvalidField(ValueError):
    """The text is not a structured field of the expected type."""


class _Input:
    """The field's text, consumed from the left."""

    def __init__(self, text: str) -> None:
        if not text.isascii():
            raise InvalidField("structured fields are ASCII")
        self.text = text
        self.pos = 0

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def take(self) -> str:
        char = self.peek()
        if not char:
            raise InvalidField("the field ends too early")
        self.pos += 1
        return char

    def skip(self, chars: str) -> None:
        while self.peek() and self.peek() in chars:
            self.pos += 1

    def at_end(self) -> bool:
        return self.pos >= len(self.text)


def _whole(text: str, parse_one: Callable[[_Input], object]) -> object:
    field = _Input(text)
    field.skip(" ")
    value = parse_one(field)
    field.skip(" ")
    if not field.at_end():
        raise InvalidField(f"unexpected {field.peek()!r} at position {field.pos}")
    return value


def parse_item(text: str) -> Item:
    """An Item field (RFC 8941 4.2, parsing an item)."""
    return _whole(text, _item)  # type: ignore[return-value]


def parse_list(text: str) -> list[Member]:
    """A List field; an empty field is an empty list."""
    return _whole(text, _list)  # type: ignore[return-value]


def parse_dictionary(text: str) -> dict[str, Member]:
    """A Dictionary field; an empty field is an empty dictionary."""
    return _whole(text, _dictionary)  # type: ignore[return-value]


def _members(field: _Input, parse_member) -> None:
    """The comma-separated members of a list or dictionary, each read by ``parse_member``."""
    while not field.at_end():
        parse_member()
        field.skip(OWS)
        if field.at_end():
            return
        if field.take() != ",":
            raise InvalidField("members are separated by commas")
        field.skip(OWS)
        if field.at_end():
            raise InvalidField("a trailing comma")


def _list(field: _Input) -> list[Member]:
    members: list[Member] = []
    _members(field, lambda: members.append(_item_or_inner_list(field)))
    return members


def _dictionary(field: _Input) -> dict[str, Member]:
    members: dict[str, Member] = {}

    def member() -> None:
        key = _key(field)
        if field.peek() == "=":
            field.take()
            members[key] = _item_or_inner_list(field)
        else:
            members[key] = (True, _parameters(field))

    _members(field, member)
    return members


def _item_or_inner_list(field: _Input) -> Member:
    return _inner_list(field) if field.peek() == "(" else _item(field)


def _inner_list(field: _Input) -> InnerList:
    field.take()  # "("
    items: list[Item] = []
    while True:
        field.skip(" ")
        if field.peek() == ")":
            field.take()
            return items, _parameters(field)
        items.append(_item(field))
        if field.peek() not in (" ", ")"):
            raise InvalidField("inner list members are separated by spaces")


def _item(field: _Input) -> Item:
    return _bare_item(field), _parameters(field)


def _parameters(field: _Input) -> Parameters:
    parameters: Parameters = {}
    while field.peek() == ";":
        field.take()
        field.skip(" ")
        key = _key(field)
        value: BareItem = True
        if field.peek() == "=":
            field.take()
            value = _bare_item(field)
        parameters[key] = value
    return parameters


def _key(field: _Input) -> str:
    first = field.peek()
    if not first or first not in _KEY_START:
        raise InvalidField("a key starts with a lower-case letter or '*'")
    start = field.pos
    while field.peek() and field.peek() in _KEY_CHARS:
        field.pos += 1
    return field.text[start : field.pos]


def _bare_item(field: _Input) -> BareItem:
    first = field.peek()
    if first == "-" or (first and first in _DIGITS):
        return _number(field)
    if first == '"':
        return _string(field)
    if first and first in _TOKEN_START:
        return _token(field)
    if first == ":":
        return _byte_sequence(field)
    if first == "?":
        return _boolean(field)
    raise InvalidField(f"no bare item starts with {first!r}")


def _number(field: _Input) -> int | Decimal:
    sign = 1
    if field.peek() == "-":
        field.take()
        sign = -1
    if not field.peek() or field.peek() not in _DIGITS:
        raise InvalidField("a number needs a digit")
    digits = ""
    is_decimal = False
    while field.peek():
        char = field.peek()
        if char in _DIGITS:
            digits += char
        elif char == "." and not is_decimal:
            if len(digits) > 12:
                raise InvalidField("a decimal has at most 12 integer digits")
            digits += char
            is_decimal = True
        else:
            break
        field.pos += 1
        if len(digits) > (16 if is_decimal else 15):
            raise InvalidField("the number is too long")
    if not is_decimal:
        return sign * int(digits)
    fraction = digits.split(".")[1]
    if not fraction or len(fraction) > 3:
        raise InvalidField("a decimal has 1 to 3 fractional digits")
    return sign * Decimal(digits)


def _string(field: _Input) -> str:
    field.take()  # the opening quote
    chars: list[str] = []
    while True:
        char = field.take()
        if char == "\\":
            escaped = field.take()
            if escaped not in ('"', "\\"):
                raise InvalidField("only quote and backslash are escaped in a string")
            chars.append(escaped)
        elif char == '"':
            return "".join(chars)
        elif not " " <= char <= "~":
            raise InvalidField("a string holds printable ASCII only")
        else:
            chars.append(char)


def _token(field: _Input) -> Token:
    start = field.pos
    field.pos += 1
    while field.peek() and field.peek() in _TOKEN_CHARS:
        field.pos += 1
    return Token(field.text[start : field.pos])


def _byte_sequence(field: _Input) -> bytes:
    field.take()  # ":"
    end = field.text.find(":", field.pos)
    if end < 0:
        raise InvalidField("a byte sequence ends with ':'")
    content = field.text[field.pos : end]
    field.pos = end + 1
    if any(char not in _BASE64_CHARS for char in content):
        raise InvalidField("a byte sequence is base64")
    try:
        # Padding may be left out (RFC 8941 4.2.7): put it back before decoding.
        return base64.b64decode(content + "=" * (-len(content) % 4), validate=True)
    except binascii.Error:
        raise InvalidField("a byte sequence is base64") from None


def _boolean(field: _Input) -> bool:
    field.take()  # "?"
    char = field.take()
    if char not in ("0", "1"):
        raise InvalidField("a boolean is ?0 or ?1")
    return char == "1"


# -- serializing ------------------------------------------------------------------------


def serialize_bare_item(value: BareItem) -> str:
    """One bare item as RFC 8941 section 4.1 writes it (decimals aside: none are sent)."""
    if isinstance(value, bool):
        return "?1" if value else "?0"
    if isinstance(value, int):
        if abs(value) > MAX_INTEGER:
            raise ValueError(f"{value} is out of the sf-integer range")
        return str(value)
    if isinstance(value, Token):
        if not value or value[0] not in _TOKEN_START or any(c not in _TOKEN_CHARS for c in value):
            raise ValueError(f"{value!r} is not a token")
        return str(value)
    if isinstance(value, str):
        if any(not " " <= char <= "~" for char in value):
            raise ValueError("a string holds printable ASCII only")
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, bytes):
        return ":" + base64.b64encode(value).decode("ascii") + ":"
    raise ValueError(f"cannot serialize {value!r} as a bare item")


def _serialize_key(key: str) -> str:
    if not key or key[0] not in _KEY_START or any(char not in _KEY_CHARS for char in key):
        raise ValueError(f"{key!r} is not a structured-field key")
    return key


def serialize_parameters(parameters: Parameters) -> str:
    text = ""
    for key, value in parameters.items():
        text += ";" + _serialize_key(key)
        if value is not True:
            text += "=" + serialize_bare_item(value)
    return text


def serialize_item(value: BareItem, parameters: Parameters | None = None) -> str:
    return serialize_bare_item(value) + serialize_parameters(parameters or {})


def serialize_dictionary(members: Iterable[tuple[str, BareItem]]) -> str:
    """A Dictionary of bare items (no parameters: none of the draft's fields has any)."""
    parts = []
    for key, value in members:
        name = _serialize_key(key)
        parts.append(name if value is True else f"{name}={serialize_bare_item(value)}")
    return ", ".join(parts)
