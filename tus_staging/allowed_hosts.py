"""The Host allow-list, against DNS rebinding: a name this server was not given → 421.

A page on ``evil.example`` whose owner points that name at 127.0.0.1 reaches a loopback
server as its own origin — no CORS involved — but its requests say ``Host: evil.example``.
Allowed: ``localhost``, every loopback address, the address the server is bound to, and
the names of ``--allowed-hosts``. Names are compared without their port: a browser's Host
always names the port of the URL it fetched, so the port tells nothing about the page.
Behind a proxy (``--behind-proxy``) the name checked is the one the client used, as the
proxy forwards it (``Forwarded: host=``, ``X-Forwarded-Host``), else the Host header.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from aiohttp import web

from protocol.errors import BadRequest, TusError
from protocol.forwarded import public_origin

LOCALHOST = "localhost"
# name or [IPv6 literal], then an optional port (RFC 9110 Host; reg-names kept to LDH, _ .)
_HOST = re.compile(
    r"(?:(?P<name>[A-Za-z0-9._-]+)|\[(?P<ipv6>[0-9A-Fa-f:.]+)\])(?::(?P<port>\d{1,5}))?"
)


class MisdirectedRequest(TusError):
    default_status = 421


@dataclass(frozen=True)
class HostValue:
    name: str  # lower case, no trailing dot; an IP address in its canonical form
    port: int | None


def parse_host(value: str) -> HostValue | None:
    """A Host header value (``name[:port]``, ``[v6][:port]``), or None when malformed."""
    match = _HOST.fullmatch(value.strip())
    if match is None:
        return None
    port = None if match["port"] is None else int(match["port"])
    if port is not None and port > 65535:
        return None
    name = canonical_name(match["ipv6"] or match["name"])
    return None if name is None else HostValue(name, port)


def canonical_name(name: str) -> str | None:
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        pass
    name = name.lower().removesuffix(".")
    return name if name and ":" not in name else None


def requested_origin(request: web.Request, behind_proxy: bool) -> tuple[str, str | None]:
    """Scheme and Host value the client used (the proxy's word for it behind a proxy)."""
    scheme, host = request.scheme, request.headers.get("Host")
    if behind_proxy:
        forwarded = public_origin(request.headers)
        scheme, host = forwarded.scheme or scheme, forwarded.host or host
    return scheme, host


class AllowedHosts:
    def __init__(self, bound_host: str, given: str = "", behind_proxy: bool = False):
        self.behind_proxy = behind_proxy
        self.names = {LOCALHOST}
        bound = canonical_name(bound_host.strip("[]"))
        if bound is not None:
            self.names.add(bound)
        for entry in (e.strip() for e in given.split(",")):
            if entry:
                self.names.add(self._entry_name(entry))

    @staticmethod
    def _entry_name(entry: str) -> str:
        host = parse_host(entry)
        if host is None and ":" in entry:
            host = parse_host(f"[{entry}]")  # a bare IPv6 address
        if host is None:
            raise ValueError(f"--allowed-hosts: {entry!r} is not a host name or address")
        if host.port is not None:
            raise ValueError(f"--allowed-hosts: give {entry!r} without its port (not compared)")
        return host.name

    def allows(self, name: str) -> bool:
        if name in self.names:
            return True
        try:
            return ipaddress.ip_address(name).is_loopback
        except ValueError:
            return False

    def refusal(self, request: web.Request) -> TusError | None:
        """Why this request is refused, or None when it is for a name served here."""
        host = requested_origin(request, self.behind_proxy)[1]
        if host is None:
            return BadRequest("no Host header")
        parsed = parse_host(host)
        if parsed is None:
            return BadRequest("malformed Host header")
        if not self.allows(parsed.name):
            return MisdirectedRequest(
                f"this server does not answer for host {parsed.name!r} (see --allowed-hosts)"
            )
        return None
