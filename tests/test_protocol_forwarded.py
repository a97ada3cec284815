from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from protocol.forwarded import PublicOrigin, public_origin


def test_rfc7239_forwarded() -> None:
    headers = {"Forwarded": 'for=192.0.2.60;proto=https;host="uploads.example.org", for=10.0.0.1'}
    assert public_origin(headers) == PublicOrigin("https", "uploads.example.org")


def test_x_forwarded_headers_take_the_client_most_value() -> None:
    headers = {"X-Forwarded-Proto": "https, http", "X-Forwarded-Host": "a.example:8443, b"}
    assert public_origin(headers) == PublicOrigin("https", "a.example:8443")


def test_forwarded_wins_over_x_forwarded() -> None:
    headers = {"Forwarded": "proto=http;host=one", "X-Forwarded-Proto": "https"}
    assert public_origin(headers) == PublicOrigin("http", "one")


def test_unsafe_values_are_ignored() -> None:
    assert public_origin({"X-Forwarded-Host": "evil.com/path"}).host is None
    assert public_origin({"X-Forwarded-Host": "a b"}).host is None
    assert public_origin({"X-Forwarded-Proto": "javascript"}).scheme is None
    assert public_origin({"X-Forwarded-Host": "[::1]:8080"}).host == "[::1]:8080"
    assert public_origin({}) == PublicOrigin(None, None)


@given(st.dictionaries(st.sampled_from(["Forwarded", "X-Forwarded-Proto", "X-Forwarded-Host"]),
                       st.text()))  # fmt: skip
def test_any_header_values_give_a_safe_origin_or_none(headers: dict[str, str]) -> None:
    origin = public_origin(headers)
    assert origin.scheme in (None, "http", "https")
    if origin.host is not None:
        assert not any(c in origin.host for c in "/?#@ \\\r\n")
