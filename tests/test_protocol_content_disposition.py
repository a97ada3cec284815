"""protocol.content_disposition: file names from Content-Disposition (RFC 6266, RFC 8187)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.content_disposition import attachment, disposition_filename
from protocol.errors import TusError
from tests.refusals import refusal


@pytest.mark.parametrize(
    ("field", "name"),
    [
        ("Attachment; filename=example.html", "example.html"),
        ('INLINE; FILENAME= "an example.html"', "an example.html"),
        ("attachment; filename*= UTF-8''%e2%82%ac%20rates", "€ rates"),
        # filename* is preferred, wherever it stands
        ("attachment; filename=\"EURO rates\"; filename*=utf-8''%e2%82%ac%20rates", "€ rates"),
        ("attachment; filename*=UTF-8''%e2%82%ac%20rates; filename=\"EURO rates\"", "€ rates"),
        ("inline; filename*=iso-8859-1'en'%A3%20rates", "£ rates"),
        # a charset this server does not read: the plain filename stands in
        ("inline; filename=\"x.txt\"; filename*=koi8-r''%C1", "x.txt"),
        ("inline; filename*=koi8-r''%C1", None),
        ('inline; filename="with \\"quotes\\" and \\\\"', 'with "quotes" and \\'),
        ('form-data; name="file"; filename="résumé.pdf"', "résumé.pdf"),  # raw UTF-8
        ("inline", None),
        ("inline;", None),
        ('attachment; size=10; creation-date="x"', None),
        ("inline; filename*=UTF-8''", ""),  # empty: the path policy refuses it
        ('inline; filename="../../etc/passwd"', "../../etc/passwd"),  # returned as sent
    ],
)
def test_file_names(field: str, name: str | None) -> None:
    assert disposition_filename(field) == name


@pytest.mark.parametrize(
    "field",
    [
        "",
        "; filename=a",
        'inline; filename="open',
        "inline; filename=a b",
        "inline filename=a",
        "inline; filename",
        "inline; filename=",
        "inline; filename=a; filename=b",  # RFC 6266: a parameter at most once
        "inline; filename*=a; filename*=b",
        "inline; filename*=UTF-8'%41",  # not charset'language'value
        "inline; filename*=''abc",  # no charset
        "inline; filename*=UTF-8''%4",
        "inline; filename*=UTF-8''%zz",
        "inline; filename*=UTF-8''a b",
        "inline; filename*=UTF-8''%FF%FE",  # not UTF-8
        'inline; filename="a\x00b"',
        'inline; filename="line\r\nbreak"',
    ],
)
def test_malformed_fields_are_refused(field: str) -> None:
    error = refusal(disposition_filename, field)
    assert error.status == 400
    assert "Content-Disposition" in error.reason


@given(name=st.text(st.characters(exclude_categories=("Cs",))))
def test_attachment_names_any_file(name: str) -> None:
    assert disposition_filename(attachment(name)) == name


@given(field=st.one_of(st.text(), st.text(alphabet="inlefam=;\"'%*ÿ0F \\"), st.binary().map(
    lambda raw: raw.decode("latin-1"))))  # fmt: skip
def test_any_field_gives_a_name_or_a_reason(field: str) -> None:
    try:
        name = disposition_filename(field)
    except TusError as error:
        assert error.status == 400 and "\n" not in error.reason
    else:
        assert name is None or isinstance(name, str)
