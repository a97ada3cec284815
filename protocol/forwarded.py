"""Where the client thinks it is talking to, from proxy headers (RFC 7239 and X-Forwarded-*).

Only used when the operator says the server is behind a proxy: otherwise any client could
make the server hand out upload URLs on a host of its choosing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

# host[:port]; a bracketed IPv6 literal allowed. Nothing that could break out of a URL.
_HOST = re.compile(r"(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")
_SCHEMES = ("http", "https")


@dataclass(frozen=True)
class PublicOrigin:
    scheme: str | None
    host: str | None


def _first(value: str) -> str:
    return value.split(",", 1)[0].strip()


def _forwarded_pairs(value: str) -> dict[str, str]:
    """The parameters of the first element of a Forwarded header (the client-most proxy)."""
    pairs: dict[str, str] = {}
    for part in _first(value).split(";"):
        name, sep, raw = part.partition("=")
        if not sep:
            continue
        raw = raw.strip()
        if len(raw) >= 2 and raw[0] == raw[-1] == '"':
            raw = raw[1:-1]
        pairs.setdefault(name.strip().lower(), raw)
    return pairs


def public_origin(headers: Mapping[str, str]) -> PublicOrigin:
    """Scheme and host the client used, as told by the proxy; None where not told or unsafe."""
    scheme: str | None = None
    host: str | None = None
    forwarded = headers.get("Forwarded")
    if forwarded:
        pairs = _forwarded_pairs(forwarded)
        scheme, host = pairs.get("proto"), pairs.get("host")
    if scheme is None and headers.get("X-Forwarded-Proto"):
        scheme = _first(headers["X-Forwarded-Proto"])
    if host is None and headers.get("X-Forwarded-Host"):
        host = _first(headers["X-Forwarded-Host"])
    if scheme is not None:
        scheme = scheme.lower()
        if scheme not in _SCHEMES:
            scheme = None
    if host is not None and not _HOST.fullmatch(host):
        host = None
    return PublicOrigin(scheme, host)
