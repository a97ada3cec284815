"""The README's configuration reference is the CLI's own help (regenerate with
``python -m tus_staging.cli_reference README.md``)."""

from __future__ import annotations

from pathlib import Path

from tus_staging.cli_reference import render

README = Path(__file__).resolve().parents[1] / "README.md"


def test_configuration_reference_matches_the_cli() -> None:
    text = README.read_text(encoding="utf-8")
    assert render(text) == text, "run: python -m tus_staging.cli_reference README.md"
