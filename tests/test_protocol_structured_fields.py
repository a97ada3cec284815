"""protocol.structured_fields: RFC 8941 parsing and serializing, examples and properties."""

from __future__ import annotations

import contextlib
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.structured_fields import (
    MAX_INTEGER,
    InvalidField,
    Token,
    parse_dictionary,
    parse_item,
    parse_list,
    serialize_dictionary,
    serialize_item,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("?1", (True, {})),
        ("?0", (False, {})),
        ("  ?1  ", (True, {})),  # SP around the field is discarded
        ("?1;a", (True, {"a": True})),
        ("?0;a=1;b=?0", (False, {"a": 1, "b": False})),
        ("?1; x=tok", (True, {"x": Token("tok")})),
        ("0", (0, {})),
        ("-0", (0, {})),
        ("042", (42, {})),  # leading zeros are digits like any other
        ("999999999999999", (MAX_INTEGER, {})),
        ("-999999999999999", (-MAX_INTEGER, {})),
        ("1.5", (Decimal("1.5"), {})),
        ("-12.125", (Decimal("-12.125"), {})),
        ('"a \\"b\\" \\\\"', ('a "b" \\', {})),
        ("foo/bar:baz", (Token("foo/bar:baz"), {})),
        ("*tok", (Token("*tok"), {})),
        (":aGVsbG8=:", (b"hello", {})),
        (":aGVsbG8:", (b"hello", {})),  # padding may be left out
        ("::", (b"", {})),
    ],
)
def test_items(text: str, expected: tuple[object, dict[str, object]]) -> None:
    value, parameters = parse_item(text)
    assert (value, parameters) == expected
    assert type(value) is type(expected[0])


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "?",
        "?2",
        "?true",
        "? 1",
        "?1 ?0",
        "?1,?1",  # two lines of an Item field: a list, not an item
        "1234567890123456",  # 16 digits
        "1.",
        "1.1234",
        "1234567890123.1",  # 13 integer digits in a decimal
        "--1",
        "- 1",
        "1a",
        "\t?1",  # only SP is discarded around a field
        '"unterminated',
        '"\\x"',
        '"tab\t"',
        '"é"',
        "é",
        ":not base64!:",
        ":aGVsbG8=",
        "?1;",
        "?1;A=1",  # keys are lower case
        "?1;a=",
        "(1 2)",  # an inner list is no item
    ],
)
def test_invalid_items(text: str) -> None:
    with pytest.raises(InvalidField):
        parse_item(text)


def test_dictionaries_and_lists() -> None:
    assert parse_dictionary("max-size=100, max-age=3600,min-size=0") == {
        "max-size": (100, {}),
        "max-age": (3600, {}),
        "min-size": (0, {}),
    }
    # A key without a value is true; a repeated key keeps its place and takes the last value.
    assert parse_dictionary("a, b=2;x, a=3") == {"a": (3, {}), "b": (2, {"x": True})}
    assert parse_dictionary("l=(1 2);p") == {"l": ([(1, {}), (2, {})], {"p": True})}
    assert parse_dictionary("") == {}
    assert parse_list("1, (a b), ?0") == [
        (1, {}),
        ([(Token("a"), {}), (Token("b"), {})], {}),
        (False, {}),
    ]
    for text in ("a=1,", "a=1,,b=2", "A=1", "a=1 b=2", "a=(1", "a=(1,2)"):
        with pytest.raises(InvalidField):
            parse_dictionary(text)


def test_serializing() -> None:
    assert serialize_item(True) == "?1"
    assert serialize_item(False, {"a": True, "b": 2}) == "?0;a;b=2"
    assert serialize_item('say "hi"') == '"say \\"hi\\""'
    assert serialize_item(b"\x00\xff") == ":AP8=:"
    assert serialize_dictionary([("max-size", 10), ("flag", True), ("off", False)]) == (
        "max-size=10, flag, off=?0"
    )
    for bad in (MAX_INTEGER + 1, "é", Token("1x"), 1.5):
        with pytest.raises(ValueError):
            serialize_item(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        serialize_dictionary([("Max", 1)])


KEYS = st.from_regex(r"[a-z*][a-z0-9_\-.*]{0,8}", fullmatch=True)
BARE_ITEMS = st.one_of(
    st.booleans(),
    st.integers(-MAX_INTEGER, MAX_INTEGER),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E)),
    st.from_regex(r"[A-Za-z*][A-Za-z0-9!#$%&'*+\-.^_`|~:/]{0,10}", fullmatch=True).map(Token),
    st.binary(max_size=20),
)


@given(value=BARE_ITEMS, parameters=st.dictionaries(KEYS, BARE_ITEMS, max_size=3))
def test_items_survive_a_round_trip(value: object, parameters: dict[str, object]) -> None:
    text = serialize_item(value, parameters)  # type: ignore[arg-type]
    parsed, parsed_parameters = parse_item(text)
    assert parsed == value and type(parsed) is type(value)
    assert parsed_parameters == parameters


@given(members=st.dictionaries(KEYS, BARE_ITEMS, max_size=6))
def test_dictionaries_survive_a_round_trip(members: dict[str, object]) -> None:
    parsed = parse_dictionary(serialize_dictionary(members.items()))  # type: ignore[arg-type]
    assert {key: value for key, (value, _) in parsed.items()} == members
    assert list(parsed) == list(members)


@given(text=st.one_of(st.text(), st.text(alphabet="?01-.:;=,() \t\"\\abcAB*/"), st.binary().map(
    lambda raw: raw.decode("latin-1"))))  # fmt: skip
def test_any_text_parses_or_is_invalid(text: str) -> None:
    """Nothing but InvalidField escapes; what parses as an item is written back the same."""
    for parse, kind in ((parse_list, list), (parse_dictionary, dict)):
        with contextlib.suppress(InvalidField):
            assert isinstance(parse(text), kind)
    try:
        value, parameters = parse_item(text)
    except InvalidField:
        return
    if not any(isinstance(v, Decimal) for v in (value, *parameters.values())):
        assert parse_item(serialize_item(value, parameters)) == (value, parameters)
