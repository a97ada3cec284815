"""HTTP dates (RFC 9110 IMF-fixdate), as used by Upload-Expires.

Day and month names are spelled out here rather than taken from strftime, whose
%a and %b follow the process locale.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta

from protocol.errors import BadRequest, quoted
from protocol.headers import OWS

DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_IMF_FIXDATE = re.compile(
    rf"({'|'.join(DAY_NAMES)}), ([0-9]{{2}}) ({'|'.join(MONTH_NAMES)}) ([0-9]{{4}}) "
    r"([0-9]{2}):([0-9]{2}):([0-9]{2}) GMT"
)


def format_http_date(epoch_seconds: float) -> str:
    """IMF-fixdate for a Unix time, e.g. "Sun, 06 Nov 1994 08:49:37 GMT" (fraction dropped)."""
    try:
        moment = EPOCH + timedelta(seconds=math.floor(epoch_seconds))
    except (OverflowError, ValueError):
        raise ValueError(f"time {epoch_seconds!r} is outside the years 1..9999") from None
    return (
        f"{DAY_NAMES[moment.weekday()]}, {moment.day:02d} {MONTH_NAMES[moment.month - 1]} "
        f"{moment.year:04d} {moment.hour:02d}:{moment.minute:02d}:{moment.second:02d} GMT"
    )


def parse_http_date(value: str, *, header: str = "HTTP date") -> float:
    """The Unix time of an IMF-fixdate; `header` names the field in the reason."""
    match = _IMF_FIXDATE.fullmatch(value.strip(OWS))
    if match is None:
        raise BadRequest(
            f"{header} must be an IMF-fixdate like 'Sun, 06 Nov 1994 08:49:37 GMT', "
            f"got {quoted(value)}"
        )
    day_name, day, month_name, year, hour, minute, second = match.groups()
    try:
        moment = datetime(
            int(year),
            MONTH_NAMES.index(month_name) + 1,
            int(day),
            int(hour),
            int(minute),
            int(second),
            tzinfo=UTC,
        )
    except ValueError:
        raise BadRequest(f"{header} is not a real date and time, got {quoted(value)}") from None
    if DAY_NAMES[moment.weekday()] != day_name:
        raise BadRequest(f"{header} names the wrong day of the week, got {quoted(value)}")
    return (moment - EPOCH).total_seconds()
