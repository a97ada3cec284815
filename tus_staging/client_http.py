"""What every client subcommand shares: a session with the credentials, answers turned into
one-line errors, and the retry policy for the failures worth another try."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import requests
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from protocol.errors import one_line

# Seconds to connect; urllib3 keeps this timeout on the socket while it sends a request
# body, so it also bounds the sending of one body block (1 MiB: a 20 KB/s link is enough).
CONNECT_TIMEOUT = 60.0
# Seconds of silence allowed while waiting for an answer: a final PATCH moves the file
# into place, a /metadata of a file that came another way reads it once.
READ_TIMEOUT = 300.0
TIMEOUTS = (CONNECT_TIMEOUT, READ_TIMEOUT)
RETRIES = 8
BUSY = 423  # another request holds the upload's lock


class ServerError(Exception):
    """A refusal (``status``: the HTTP status), an unreachable server (``unreachable``), or
    an answer that makes no sense (neither)."""

    def __init__(self, status: int | None, reason: str, unreachable: bool = False):
        # aiohttp's own refusals already begin with their status ("404: Not Found").
        said = status is None or reason.startswith(f"{status}:")
        super().__init__(reason if said else f"{status}: {reason}")
        self.status = status
        self.unreachable = unreachable


def base_url(url: str) -> str:
    """The server's URL without a trailing slash; ValueError unless http(s)://host…"""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"--url must be http://host[:port][/path], got {url!r}")
    return url.strip().rstrip("/")


def new_session(token: str | None) -> requests.Session:
    """One per thread (a requests Session is not shared between threads)."""
    session = requests.Session()
    if token:
        session.headers["Authorization"] = f"Bearer {token}"
    return session


def send(session: requests.Session, method: str, url: str, **kwargs: Any) -> requests.Response:
    """The answer to one request; ServerError for anything but a 2xx (or a 3xx not followed)."""
    try:
        response = session.request(method, url, timeout=TIMEOUTS, **kwargs)
    except requests.RequestException as error:
        reason = f"cannot reach {urlsplit(url).netloc}: {_cause(error)}"
        raise ServerError(None, reason, unreachable=True) from error
    if response.status_code >= 400:
        raise ServerError(response.status_code, refusal_reason(response))
    return response


def refusal_reason(response: requests.Response) -> str:
    """The server's one-line reason (its body's first line), else the status phrase."""
    text = response.text.strip()
    first_line = text.splitlines()[0].strip() if text else ""
    # Escaped: a server's text must not drive the user's terminal.
    return one_line(first_line or response.reason or "refused")


def _cause(error: BaseException) -> str:
    # requests nests the socket's error three levels deep; its text is the useful part.
    while (inner := error.__cause__ or error.__context__) is not None:
        error = inner
    text = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
    return text.splitlines()[0] if text else type(error).__name__


def is_transient(error: BaseException) -> bool:
    """Worth another try: the network, a busy upload (423), the server's own trouble."""
    if isinstance(error, ServerError):
        return error.unreachable or error.status == BUSY or (error.status or 0) >= 500
    # A local file's trouble is not the network's: only what requests raises is retried.
    return isinstance(error, requests.RequestException)


def retrying(first_delay: float) -> Retrying:
    """Exponential backoff from ``first_delay`` seconds (at most a minute), RETRIES tries."""
    return Retrying(
        stop=stop_after_attempt(RETRIES),
        wait=wait_exponential(multiplier=first_delay, max=60),
        retry=retry_if_exception(is_transient),
        reraise=True,
    )
