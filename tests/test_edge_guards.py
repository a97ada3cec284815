"""What a stranger's web page can do to a server on this machine: no CORS unless asked, a
Host allow-list against DNS rebinding (421), no cross-origin unsafe request that carries
ambient authority (403) — each checked on the real server, and their rules exhaustively."""

from __future__ import annotations

import functools
import ipaddress
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from tus_staging.allowed_hosts import AllowedHosts, HostValue, parse_host
from tus_staging.cors import CorsPolicy, normalized_origin
from tus_staging.cross_origin import is_cross_origin

from .raw_http import raw_status
from .servers import TOKENS, ServerProcess
from .tus_client import encode_metadata

EVIL = "https://evil.example"
APP = "https://app.example.org"

# --- the rules ---------------------------------------------------------------------------------

labels = st.from_regex(r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,20}[A-Za-z0-9_])?", fullmatch=True)
names = st.lists(labels, min_size=1, max_size=4).map(".".join)
ports = st.none() | st.integers(0, 65535)


def with_port(host: str, port: int | None) -> str:
    return host if port is None else f"{host}:{port}"


@given(names, ports, st.booleans())
def test_a_host_name_parses_to_its_lower_case_name_and_port(
    name: str, port: int | None, trailing_dot: bool
) -> None:
    parsed = parse_host(with_port(name + "." * trailing_dot, port))
    if name.replace(".", "").isdigit():  # all-digit names may read as an IPv4 address
        return
    assert parsed == HostValue(name.lower(), port)


@given(st.ip_addresses(v=6), ports)
def test_an_ipv6_literal_parses_to_its_canonical_form(address, port: int | None) -> None:
    exploded = with_port(f"[{address.exploded.upper()}]", port)
    assert parse_host(exploded) == HostValue(str(address), port)


@pytest.mark.parametrize(
    "value",
    ["", "::1", "[::1", "a b", "a/b", "a:port", "a:65536", "a@b", "[::1]x", "é.example", ":80"],
)
def test_malformed_host_values_parse_to_none(value: str) -> None:
    assert parse_host(value) is None


@given(st.ip_addresses())
def test_every_loopback_address_and_only_those_of_the_addresses_is_allowed(address) -> None:
    hosts = AllowedHosts("127.0.0.1")
    assert hosts.allows(str(address)) == (address.is_loopback or str(address) == "127.0.0.1")


@given(names)
def test_a_name_is_allowed_only_when_given_or_local(name: str) -> None:
    canonical = parse_host(name)
    assert canonical is not None
    alone = AllowedHosts("127.0.0.1")
    given_too = AllowedHosts("127.0.0.1", f"other.example, {name.upper()}")
    assert alone.allows(canonical.name) == (canonical.name == "localhost" or _is_loopback(name))
    assert given_too.allows(canonical.name)


def _is_loopback(name: str) -> bool:
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


@pytest.mark.parametrize("entry", ["uploads.example:8443", "a b", "http://x"])
def test_an_allowed_host_with_a_port_or_not_a_name_is_refused(entry: str) -> None:
    with pytest.raises(ValueError, match="--allowed-hosts"):
        AllowedHosts("127.0.0.1", entry)


fetch_sites = st.sampled_from([None, "same-origin", "none", "same-site", "cross-site"])
origins = st.sampled_from([None, "null", EVIL, "http://127.0.0.1:1080", "http://127.0.0.1:9"])


@given(origins, fetch_sites)
def test_cross_origin_when_either_header_says_so(origin: str | None, site: str | None) -> None:
    own = "http://127.0.0.1:1080"
    says_cross_site = site in ("same-site", "cross-site")
    origin_differs = origin is not None and origin != own
    assert is_cross_origin(origin, site, own) == (says_cross_site or origin_differs)


@given(st.sampled_from(["http", "https"]), names, ports)
def test_an_origin_normalizes_once_and_drops_its_default_port(
    scheme: str, host: str, port: int | None
) -> None:
    origin = normalized_origin(with_port(f"{scheme.upper()}://{host}", port) + "/")
    assert origin is not None
    assert normalized_origin(origin) == origin
    default = {"http": 80, "https": 443}[scheme]
    assert origin == with_port(f"{scheme}://{host.lower()}", None if port == default else port)


def test_cors_any_origin_needs_authentication_and_listed_origins_must_be_origins() -> None:
    with pytest.raises(ValueError, match="needs authentication"):
        CorsPolicy("*", credentials=False, authenticated=False)
    assert CorsPolicy("*", credentials=False, authenticated=True).allow_origin(EVIL) == "*"
    for bad in ("app.example.org", "https://app.example.org/page", "null", "ftp://x"):
        with pytest.raises(ValueError, match="--cors-origins"):
            CorsPolicy(bad, credentials=False, authenticated=False)
    listed = CorsPolicy(f"{APP.upper()}:443/", credentials=False, authenticated=False)
    assert listed.lists(APP) and not listed.lists(EVIL)
    assert listed.allow_origin(APP) == APP


# --- single-user mode on the real server -------------------------------------------------------


@pytest.fixture
def single_user(make_server) -> Callable[..., ServerProcess]:
    """Start a server without credentials (single-user, user ``local``) with extra args."""
    return functools.partial(make_server, single_user=True)


def home(server: ServerProcess) -> Path:
    path = server.data_dir / "staging" / "local"
    path.mkdir(parents=True, exist_ok=True)
    return path


def curl_status(*args: str) -> tuple[int, str]:
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed")
    done = subprocess.run([curl, "-s", "-o", "/dev/null", "-D", "-", *args],
                          capture_output=True, text=True, timeout=30, check=True)  # fmt: skip
    return int(done.stdout.split()[1]), done.stdout


def test_a_curl_delete_from_another_origin_is_refused(single_user) -> None:
    server = single_user()
    notes = home(server) / "notes.txt"
    notes.write_text("mine")
    status, head = curl_status(
        "-X", "DELETE", f"{server.url}/delete/notes.txt", "-H", f"Origin: {EVIL}"
    )
    assert status == 403
    assert "access-control-allow-origin" not in head.lower()
    assert notes.read_text() == "mine"
    # The same request from a tool (no Origin) or from a page of this server is served.
    status, _ = curl_status(
        "-X", "DELETE", f"{server.url}/delete/notes.txt", "-H", f"Origin: {server.url}"
    )
    assert status == 200 and not notes.exists()


def test_single_user_mode_ignores_credentials_on_every_route(single_user) -> None:
    """A client that sends credentials anyway (a proxy's Basic auth, a token) is the one
    local user everywhere, as it is on the tus endpoint."""
    server = single_user()
    (home(server) / "notes.txt").write_text("mine")
    for credentials in ("Basic Zm9vOmJhcg==", "Bearer some-token"):
        for path in ("/list/", "/metadata/notes.txt", "/download/notes.txt"):
            status, _ = curl_status(f"{server.url}{path}", "-H", f"Authorization: {credentials}")
            assert status == 200, (credentials, path)


def unsafe_requests(server: ServerProcess) -> list[tuple[str, str, dict]]:
    """One request of each unsafe kind; each changes something when served."""
    tus = {"Tus-Resumable": "1.0.0", "Upload-Length": "3",
           "Upload-Metadata": encode_metadata(filename="made-by-tus.txt")}  # fmt: skip
    return [
        ("POST", f"{server.url}/mkdir/made-by-post", {}),
        ("PATCH", f"{server.url}/mv/made-by-post", {"json": {"newPath": "moved"}}),
        ("DELETE", f"{server.url}/delete/victim.txt", {}),
        ("POST", f"{server.url}/files/", {"headers": tus}),
    ]


def nothing_changed(server: ServerProcess) -> bool:
    return sorted(p.name for p in home(server).iterdir()) == ["victim.txt"]


@pytest.mark.parametrize(
    "sender",
    [
        {"Origin": EVIL},
        {"Origin": "null"},  # a sandboxed frame, a file:// page
        {"Sec-Fetch-Site": "cross-site"},  # a browser that sends no Origin
        {"Origin": "http://127.0.0.1:9", "Sec-Fetch-Site": "same-site"},  # another local app
    ],
    ids=["other-origin", "null-origin", "fetch-site-only", "other-port"],
)
def test_unsafe_requests_from_other_origins_are_refused_and_change_nothing(
    single_user, sender: dict[str, str]
) -> None:
    server = single_user()
    (home(server) / "victim.txt").write_text("v")
    for method, url, options in unsafe_requests(server):
        headers = {**options.pop("headers", {}), **sender}
        refused = requests.request(method, url, headers=headers, timeout=10, **options)
        assert refused.status_code == 403, (method, url, refused.text)
        assert "--cors-origins" in refused.text and refused.text.count("\n") == 1
        assert "Access-Control-Allow-Origin" not in refused.headers
    assert nothing_changed(server)
    safe = requests.get(f"{server.url}/list/", headers=sender, timeout=10)
    assert safe.status_code == 200  # readable by no page: no CORS header
    assert "Access-Control-Allow-Origin" not in safe.headers


def test_same_origin_pages_tools_and_listed_origins_are_served(single_user) -> None:
    server = single_user("--cors-origins", APP)
    victim = home(server) / "victim.txt"
    for sender in ({"Origin": server.url, "Sec-Fetch-Site": "same-origin"}, {}, {"Origin": APP}):
        victim.write_text("v")
        for method, url, options in unsafe_requests(server):
            headers = {**options.pop("headers", {}), **sender}
            served = requests.request(method, url, headers=headers, timeout=10, **options)
            assert served.status_code in (200, 201), (sender, method, url, served.text)
            listed = sender.get("Origin") == APP
            assert ("Access-Control-Allow-Origin" in served.headers) == listed
        (home(server) / "moved").rmdir()
    localhost = requests.post(
        f"http://localhost:{server.port}/mkdir/via-localhost",
        headers={"Origin": f"http://localhost:{server.port}"}, timeout=10,
    )  # fmt: skip
    assert localhost.status_code == 201


def test_no_cors_in_single_user_mode_unless_origins_are_given(single_user) -> None:
    server = single_user()
    ask = {"Origin": EVIL, "Access-Control-Request-Method": "DELETE"}
    preflight = requests.options(f"{server.url}/delete/x", headers=ask, timeout=10)
    assert "Access-Control-Allow-Origin" not in preflight.headers
    assert "Access-Control-Allow-Methods" not in preflight.headers


def test_a_request_for_another_host_name_is_misdirected_and_changes_nothing(single_user) -> None:
    server = single_user()
    (home(server) / "victim.txt").write_text("v")
    for host in ("evil.example", f"evil.example:{server.port}", "127.0.0.1.nip.io", "10.0.0.1"):
        refused = requests.delete(
            f"{server.url}/delete/victim.txt", headers={"Host": host}, timeout=10
        )
        assert refused.status_code == 421, host
        assert refused.text.count("\n") == 1 and "--allowed-hosts" in refused.text
    assert nothing_changed(server)
    for malformed in ("Host: evil example\r\n", "Host: [::1\r\n", ""):  # "": HTTP/1.0, none
        status = raw_status(server, f"GET /list/ HTTP/1.0\r\n{malformed}\r\n".encode("latin-1"))
        assert status == 400, malformed
    for host in ("localhost", "LOCALHOST.", f"localhost:{server.port}", "127.0.0.2", "[::1]:80",
                 "[0:0::1]", f"127.0.0.1:{server.port}"):  # fmt: skip
        served = requests.get(f"{server.url}/list/", headers={"Host": host}, timeout=10)
        assert served.status_code == 200, host


def test_allowed_hosts_from_the_flag_or_the_environment_and_through_a_proxy(single_user) -> None:
    server = single_user("--behind-proxy", env={"TUS_STAGING_ALLOWED_HOSTS": "uploads.example"})
    url = f"{server.url}/list/"
    assert (
        requests.get(url, headers={"Host": "uploads.example:8443"}, timeout=10).status_code == 200
    )
    forwarded = {"Host": "127.0.0.1", "X-Forwarded-Host": "uploads.example"}
    assert requests.get(url, headers=forwarded, timeout=10).status_code == 200
    # Behind a proxy the name the client used is the one checked.
    rebound = {"Host": "127.0.0.1", "X-Forwarded-Host": "evil.example"}
    assert requests.get(url, headers=rebound, timeout=10).status_code == 421
    assert (
        requests.get(url, headers={"Forwarded": "host=evil.example"}, timeout=10).status_code == 421
    )


# --- authenticated modes -------------------------------------------------------------------


def test_with_tokens_any_host_is_served_unless_allowed_hosts_are_given(make_server) -> None:
    auth = {"Authorization": TOKENS["alice"]}
    open_server = make_server()
    served = requests.get(
        f"{open_server.url}/list/", headers={**auth, "Host": "files.example"}, timeout=10
    )
    assert served.status_code == 200
    listed = make_server("--allowed-hosts", "files.example")
    for host, status in (("files.example", 200), ("evil.example", 421), ("localhost", 200)):
        answer = requests.get(f"{listed.url}/list/", headers={**auth, "Host": host}, timeout=10)
        assert answer.status_code == status, host


def test_a_session_cookie_is_no_authority_for_another_origin(make_server) -> None:
    server = make_server("--cors-origins", APP)
    cookie = {"kbase_session": TOKENS["alice"]}
    forged = requests.post(
        f"{server.url}/mkdir/forged", cookies=cookie, headers={"Origin": EVIL}, timeout=10
    )
    assert forged.status_code == 403
    assert not (server.data_dir / "staging" / "alice" / "forged").exists()
    for name, options in {
        "same-origin": {"cookies": cookie, "headers": {"Origin": server.url}},
        "listed": {"cookies": cookie, "headers": {"Origin": APP}},
        "no-origin": {"cookies": cookie},
        # A header only a script the server let in can set: not ambient, not forged.
        "header": {"headers": {"Origin": EVIL, "Authorization": TOKENS["alice"]}},
    }.items():
        made = requests.post(f"{server.url}/mkdir/{name}", timeout=10, **options)
        assert made.status_code == 201, name
    # Without credentials the guard has nothing to protect: the answer is the 401.
    assert (
        requests.post(f"{server.url}/mkdir/x", headers={"Origin": EVIL}, timeout=10).status_code
        == 401
    )


# --- refused at start ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cors-origins", "*"], "--cors-origins '*' needs authentication"),
        (["--cors-origins", "app.example.org"], "is not an origin"),
        (["--allowed-hosts", "uploads.example:443"], "without its port"),
    ],
)
def test_an_unsafe_or_malformed_edge_setup_is_refused_at_start(
    tmp_path: Path, args: list[str], message: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tus_staging.cli", "serve", "--data-dir", str(tmp_path / "d"),
         "--redis-url", "redis://127.0.0.1:9", *args],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode != 0
    assert message in done.stderr and "Traceback" not in done.stderr
