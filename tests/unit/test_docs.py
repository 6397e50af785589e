"""Docs generated from code must match the code."""

from __future__ import annotations

from pathlib import Path

from vaultd.commands.config_reference import render

ROOT = Path(__file__).resolve().parents[2]


def test_configuration_reference_is_current() -> None:
    committed = (ROOT / "docs" / "configuration.md").read_text()
    assert committed == render(), "run `vaultd config-reference > docs/configuration.md`"


def test_every_setting_is_documented() -> None:
    assert "|  |" not in render(), "a setting has no docstring"


def test_setting_types_read_as_a_user_writes_them() -> None:
    text = render()
    for noise in ("<enum", "<class", "ApprovalMethod", "tuple[", "dict[", "None"):
        assert noise not in text, noise
    assert '`"code"` or `"touch"` or `"touch-or-code"`' in text
    assert "list of strings" in text and "string (optional)" in text
