"""docs/reference.md is the CLI's own help (regenerate with
``python -m tus_staging.cli_reference``)."""

from __future__ import annotations

from tus_staging.cli_reference import REFERENCE, render


def test_the_reference_matches_the_cli() -> None:
    text = REFERENCE.read_text(encoding="utf-8")
    assert render(text) == text, "run: python -m tus_staging.cli_reference"
