"""Docs generated from code must match the code."""

from __future__ import annotations

from pathlib import Path

from vaultd import errors
from vaultd.commands.config_reference import render

ROOT = Path(__file__).resolve().parents[2]


def test_configuration_reference_is_current() -> None:
    committed = (ROOT / "docs" / "configuration.md").read_text()
    assert committed == render(), "run `vaultd config-reference > docs/configuration.md`"


def test_every_setting_is_documented() -> None:
    assert "|  |" not in render(), "a setting has no docstring"


def test_error_code_reference_is_current() -> None:
    committed = (ROOT / "docs" / "errors.md").read_text()
    assert committed == errors.reference(), (
        "run `python -c 'import vaultd.errors as e; print(e.reference(), end=\"\")' "
        "> docs/errors.md`"
    )
