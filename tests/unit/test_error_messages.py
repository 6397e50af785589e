"""Error messages name only settings that exist, and the error hierarchy keeps its contract."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import BaseModel

from vaultd import errors
from vaultd.settings import ProfileSettings, Settings

ROOT = Path(__file__).resolve().parents[2]

SETTING_RE = re.compile(
    r"(?<![\w./-])([a-z][a-z0-9_]*)\.([a-z_][a-z0-9_]*)(?:\.([a-z_][a-z0-9_]*))?(?![\w/(])"
)
"""``section.key`` (or ``profiles.NAME.key``) not inside a path, a module name or a call."""

SECTIONS_THAT_NEVER_EXISTED = {"hsm", "gates", "settings"}
"""Prefixes that look like settings in old messages but are no section of :class:`Settings`."""

RELEASED_CODES = {
    "VAULT_ERROR", "CONFIG_INVALID", "UNSAFE_PERMISSIONS", "UNKNOWN_PROFILE", "POLICY_INVALID",
    "POLICY_CONTEXT_INVALID", "HARDENING_FAILED", "INTERNAL_ERROR", "HSM_ERROR", "SEALED",
    "HSM_PIN_INCORRECT", "HSM_PIN_FINAL_TRY", "HSM_PIN_LOCKED", "HSM_KEY_UNSAFE",
    "HSM_KEY_EXHAUSTED", "HSM_MODULE_REFUSED", "TOKEN_NOT_FOUND", "TOKEN_AMBIGUOUS",
    "KEYSTORE_UNAVAILABLE", "STORE_ERROR", "RECORD_CORRUPT", "STORE_ROLLBACK",
    "STORE_UNREADABLE", "STORE_EXISTS", "RECORD_NOT_FOUND", "RECORD_EXISTS",
    "AUDIT_UNAVAILABLE", "AUDIT_TAMPERED", "GATE_ERROR", "DENIED", "APPROVAL_TIMEOUT",
    "APPROVAL_UNAVAILABLE", "APPROVAL_NOT_FOUND", "GRANT_USED", "ACCESS_DENIED_BY_POLICY",
    "BREAK_GLASS_ONLY", "FIDO2_REJECTED", "FIDO2_SUSPECT", "FIDO2_PIN_REQUIRED",
    "FIDO2_PIN_INVALID", "FIDO2_PIN_AUTH_BLOCKED", "FIDO2_PIN_BLOCKED", "MFA_ERROR",
    "CODE_MALFORMED", "CODE_REUSED", "RATE_LIMITED", "MFA_REJECTED", "MFA_LOCKED",
    "STS_ERROR", "STS_THROTTLED", "STS_UNAVAILABLE", "STS_EXPIRED_TOKEN", "STS_REGION_DISABLED",
    "STS_KEY_INVALID", "STS_CLOCK_SKEW", "STS_ACCESS_DENIED", "STS_DURATION",
    "ROTATION_FAILED", "ACCESS_KEY_LIMIT", "IAM_ACCESS_DENIED", "IAM_ERROR", "IAM_UNAVAILABLE",
    "ROTATION_ABORTED", "FEDERATION_FAILED", "BROWSER_UNAVAILABLE", "PROTOCOL_ERROR",
    "BAD_REQUEST", "FRAME_TOO_LARGE", "REQUEST_TIMEOUT", "CLIENT_GONE", "BUSY",
    "ALREADY_RUNNING", "PLUGIN_UNAVAILABLE", "DAEMON_NOT_RUNNING",
}  # fmt: skip
"""Every code vaultd raised when this test was written: the wire and exit-status contract."""


def _raise_texts() -> Iterator[tuple[str, str]]:
    """(``file:line``, string literal) for every literal inside a ``raise`` in the package."""
    for folder in ("vaultd", "plugins", "tui"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Raise) and node.exc is not None:
                    for sub in ast.walk(node.exc):
                        if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
                            yield f"{path.relative_to(ROOT)}:{node.lineno}", sub.value


def _fields(model: type[BaseModel]) -> set[str]:
    return set(model.model_fields)


def _unknown_setting(match: re.Match[str]) -> str | None:
    """The name if ``match`` looks like a setting that :class:`Settings` lacks, else None."""
    section, key, sub = match.groups()
    top = Settings.model_fields
    if section in SECTIONS_THAT_NEVER_EXISTED:
        return match.group(0)
    if section not in top:
        return None  # not setting-like: a module, a file name, a word with a dot
    if section == "profiles":
        return None if sub is None or sub in _fields(ProfileSettings) else match.group(0)
    annotation = top[section].annotation
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return None if key in _fields(annotation) else match.group(0)
    return match.group(0)  # a scalar setting has no keys below it


def test_messages_name_only_settings_that_exist() -> None:
    wrong = [
        f"{where}: {name}"
        for where, text in _raise_texts()
        for match in SETTING_RE.finditer(text)
        if (name := _unknown_setting(match)) is not None
    ]
    assert wrong == []


def test_the_check_catches_the_names_it_was_written_for() -> None:
    for text in ("fix hsm.token_label", "add it to pkcs11.module_allow", "in settings.gates"):
        match = SETTING_RE.search(text)
        assert match is not None
        assert _unknown_setting(match) is not None, text
    for text in ("check pkcs11.module here", "see profiles.dev.role_arn", "vaultd.plugins.x"):
        match = SETTING_RE.search(text)
        assert match is None or _unknown_setting(match) is None, text


def _codes() -> dict[str, type[errors.VaultError]]:
    found: dict[str, type[errors.VaultError]] = {}
    for value in vars(errors).values():
        if isinstance(value, type) and issubclass(value, errors.VaultError):
            if "code" in vars(value):
                assert value.code not in found, f"{value.code} is defined twice"
                found[value.code] = value
    return found


def test_every_released_code_is_still_raised_by_a_class() -> None:
    assert RELEASED_CODES <= set(_codes())


@pytest.mark.parametrize("code", sorted(_codes()))
def test_each_error_class_has_a_code_and_a_one_line_docstring(code: str) -> None:
    cls = _codes()[code]
    assert re.fullmatch(r"[A-Z][A-Z0-9_]+", code)
    assert cls.__doc__ is not None
    assert cls.__doc__.strip().splitlines()[0].endswith(".")
    assert "\n" not in cls.fix


def test_the_hardening_error_is_part_of_the_hierarchy() -> None:
    from vaultd.system import hardening

    assert hardening.HardeningFailed is errors.HardeningFailed
    assert issubclass(errors.HardeningFailed, errors.VaultError)
