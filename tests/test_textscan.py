"""The content scanner's C step (store/_textscan.c) against its bytes-methods stand-in."""

from __future__ import annotations

import shutil
import sys

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from store import scanner as scanner_module
from store.scanner import scan_in_python

from .test_scanner import texty

C_STEP = scanner_module._textscan


def test_the_c_step_is_built_where_a_compiler_is() -> None:
    """Without this, a failed build would only show as skipped tests."""
    if not sys.platform.startswith("linux") or not shutil.which("cc"):
        pytest.skip("no C compiler here: the package installs without the extension")
    assert C_STEP is not None and scanner_module.scan_chunk is C_STEP.scan


needs_c_step = pytest.mark.skipif(C_STEP is None, reason="the scanner's C step is not built here")

# What a chunk step is given: any bytes, after the cut start of a character (or nothing).
cut_starts = st.sampled_from(
    [b"", b"\xc3", b"\xe2", b"\xe2\x82", b"\xf0\x9f\x98", b"\xed", b"\xe0", b"\xf4"]
)


@needs_c_step
@settings(max_examples=500, deadline=None)
@given(
    pending=cut_starts,
    data=st.one_of(
        texty,
        texty.map(lambda b: b * 8),
        st.binary(min_size=60, max_size=300).map(lambda b: b * 100),
    ),
    text=st.booleans(),
    offset=st.integers(min_value=0, max_value=63),
)
@example(pending=b"\xed", data=b"\xa0", text=True, offset=0)  # a surrogate, cut short
@example(pending=b"", data=b"ok\xed\xbf", text=True, offset=0)
def test_the_c_step_is_the_bytes_methods_step(
    pending: bytes, data: bytes, text: bool, offset: int
) -> None:
    # From an unaligned start too: the C step works on 64-byte blocks.
    view = memoryview(bytes(offset) + data)[offset:]
    assert C_STEP.scan(view, pending, text) == scan_in_python(view, pending, text)


@needs_c_step
def test_the_c_step_refuses_what_is_not_bytes() -> None:
    with pytest.raises(TypeError):
        C_STEP.scan("text", b"", True)
