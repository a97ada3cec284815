"""The shape of every refusal from the protocol layer: a TusError with a one-line reason."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from protocol.errors import TusError


def refusal(call: Callable[..., Any], *args: Any) -> TusError:
    with pytest.raises(TusError) as caught:
        call(*args)
    error = caught.value
    assert "\n" not in error.reason and "\r" not in error.reason
    return error
