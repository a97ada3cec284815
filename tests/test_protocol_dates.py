"""protocol.dates: IMF-fixdate for Upload-Expires."""

from __future__ import annotations

import email.utils

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.dates import format_http_date, parse_http_date
from protocol.errors import TusError

RFC_EXAMPLE = "Sun, 06 Nov 1994 08:49:37 GMT"
RFC_EXAMPLE_EPOCH = 784111777
# 0001-01-01 .. 9999-12-31 23:59:59 UTC
FIRST_SECOND = -62135596800
LAST_SECOND = 253402300799


def test_format_rfc_example() -> None:
    assert format_http_date(RFC_EXAMPLE_EPOCH) == RFC_EXAMPLE
    assert format_http_date(RFC_EXAMPLE_EPOCH + 0.999) == RFC_EXAMPLE


def test_format_extremes() -> None:
    assert format_http_date(0) == "Thu, 01 Jan 1970 00:00:00 GMT"
    assert format_http_date(FIRST_SECOND) == "Mon, 01 Jan 0001 00:00:00 GMT"
    assert format_http_date(LAST_SECOND) == "Fri, 31 Dec 9999 23:59:59 GMT"


@pytest.mark.parametrize("epoch", [LAST_SECOND + 1, FIRST_SECOND - 1, 1e300])
def test_format_out_of_range(epoch: float) -> None:
    with pytest.raises(ValueError):
        format_http_date(epoch)


def test_parse_rfc_example() -> None:
    assert parse_http_date(RFC_EXAMPLE) == RFC_EXAMPLE_EPOCH
    assert parse_http_date(f" {RFC_EXAMPLE}\t") == RFC_EXAMPLE_EPOCH


@pytest.mark.parametrize(
    "value",
    [
        "",
        "Sunday, 06-Nov-94 08:49:37 GMT",  # RFC 850: obsolete, not produced by tus clients
        "Sun Nov  6 08:49:37 1994",  # asctime
        "sun, 06 Nov 1994 08:49:37 GMT",
        "Sun, 6 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 08:49:37 UTC",
        "Sun, 06 Nov 1994 08:49:37 +0000",
        "Sun,  06 Nov 1994 08:49:37 GMT",
        "Mon, 06 Nov 1994 08:49:37 GMT",  # wrong weekday
        "Tue, 31 Feb 1995 08:49:37 GMT",  # no such day
        "Sun, 06 Nov 1994 24:00:00 GMT",
        "Sun, 06 Nov 1994 08:49:60 GMT",
        "Sat, 01 Jan 0000 00:00:00 GMT",
        "Sun, ٠٦ Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 08:49:37 GMT\r\nX: y",
    ],
)
def test_parse_refused(value: str) -> None:
    with pytest.raises(TusError) as caught:
        parse_http_date(value, header="Upload-Expires")
    assert caught.value.status == 400
    assert "Upload-Expires" in caught.value.reason
    assert "\n" not in caught.value.reason


@given(st.integers(min_value=FIRST_SECOND, max_value=LAST_SECOND))
def test_round_trip_whole_seconds(epoch: int) -> None:
    assert parse_http_date(format_http_date(epoch)) == epoch


@given(st.integers(min_value=0, max_value=2**33))
def test_format_agrees_with_email_utils(epoch: int) -> None:
    assert format_http_date(epoch) == email.utils.formatdate(epoch, usegmt=True)


@given(
    st.one_of(
        st.text(),
        st.binary().map(lambda raw: raw.decode("latin-1")),
        st.from_regex(
            r"[A-Z][a-z]{2}, [0-9]{2} [A-Z][a-z]{2} [0-9]{4} [0-9:]{8} GMT", fullmatch=True
        ),
    )
)
def test_parse_never_crashes(text: str) -> None:
    try:
        parse_http_date(text)
    except TusError as error:
        assert error.status == 400
