"""Docs generated from code must match the code."""

from __future__ import annotations

import re
from pathlib import Path

from vaultd import errors
from vaultd.commands.config_reference import render
from vaultd.core import access_policy
from vaultd.ipc import protocol

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


def test_policy_reference_is_current_and_complete() -> None:
    committed = (ROOT / "docs" / "policy.md").read_text()
    assert committed == access_policy.reference(), (
        "run `python -c 'import vaultd.core.access_policy as p; print(p.reference(), end=\"\")' "
        "> docs/policy.md`"
    )
    assert set(access_policy.ACTION_HELP) == set(access_policy.ACTIONS)
    assert set(access_policy.CONDITION_KEY_HELP) == set(access_policy.CONDITION_KEYS)
    for name in ("vaultd:AssumeRoot", "vaultd:Exec", "vaultd:Rotate", "vaultd:TargetAccount",
                 "vaultd:RootTask", "vaultd:ClientExecutable"):  # fmt: skip
        assert f"| `{name}` |" in committed


def test_error_code_reference_is_current() -> None:
    committed = (ROOT / "docs" / "errors.md").read_text()
    assert committed == errors.reference(), (
        "run `python -c 'import vaultd.errors as e; print(e.reference(), end=\"\")' "
        "> docs/errors.md`"
    )


def test_protocol_reference_is_current() -> None:
    committed = (ROOT / "docs" / "protocol.md").read_text()
    assert committed == protocol.reference(), (
        "run `python -c 'import vaultd.ipc.protocol as p; print(p.reference(), end=\"\")' "
        "> docs/protocol.md`"
    )


def test_threat_model_defines_every_id_the_code_cites() -> None:
    model = (ROOT / "docs" / "threat-model.md").read_text()
    defined = set(re.findall(r"^\| ([TFG]\d+) \|", model, flags=re.M))
    expected = {f"T{n}" for n in range(1, 36)} | {f"F{n}" for n in range(1, 42)}
    assert expected | {f"G{n}" for n in range(1, 22)} == defined
    cited: set[str] = set()
    for folder in ("vaultd", "tui", "plugins", "tests", "bench"):
        for path in (ROOT / folder).rglob("*.py"):
            for span in re.findall(r"docs/threat-model\.md,? ([^)\"\n]*)", path.read_text()):
                cited.update(re.findall(r"\b[TFG]\d+\b", span))
    assert cited <= defined, sorted(cited - defined)
