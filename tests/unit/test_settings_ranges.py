"""Duration and approval ranges in the config are the core's (vaultd/core/serving.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from vaultd.core import serving
from vaultd.errors import ConfigError
from vaultd.settings import load_settings

PROFILE = 'credentials = "dev"\nmfa_serial = "arn:aws:iam::123456789012:mfa/me"\n'
ROLE = 'role_arn = "arn:aws:iam::123456789012:role/admin"\n'


def _load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str) -> object:
    config = tmp_path / "config.toml"
    config.write_text(text)
    config.chmod(0o600)
    monkeypatch.setenv("VAULTD_CONFIG", str(config))
    return load_settings()


@pytest.mark.parametrize(
    ("extra", "seconds", "ok"),
    [
        ("", serving.MIN_DURATION_SECONDS, True),
        ("", serving.SESSION_MAX_SECONDS, True),
        ("", serving.MIN_DURATION_SECONDS - 1, False),
        ("", serving.SESSION_MAX_SECONDS + 1, False),
        (ROLE, serving.ROLE_MAX_SECONDS, True),
        (ROLE, serving.ROLE_MAX_SECONDS + 1, False),
    ],
)
def test_profile_durations_follow_the_core_ranges(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: str, seconds: int, ok: bool
) -> None:
    text = f"[profiles.dev]\n{PROFILE}{extra}duration_seconds = {seconds}\n"
    if ok:
        _load(tmp_path, monkeypatch, text)
        return
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, monkeypatch, text)
    message = str(err.value)
    assert "\n" not in message
    assert f"profiles.dev: duration_seconds={seconds} is outside" in message
    assert err.value.code == "CONFIG_INVALID"


@pytest.mark.parametrize(
    "seconds", [serving.MIN_APPROVAL_TIMEOUT - 1, serving.MAX_APPROVAL_TIMEOUT + 1]
)
def test_approval_timeout_outside_the_core_bounds_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seconds: float
) -> None:
    with pytest.raises(ConfigError, match=r"approval\.timeout_seconds"):
        _load(tmp_path, monkeypatch, f"[approval]\ntimeout_seconds = {seconds}\n")


@pytest.mark.parametrize(
    ("lines", "ok"),
    [
        ('piv_slot = "95"\npiv_audit_slot = "9c"\n', True),
        ('piv_slot = "96"\n', False),  # past the last retired slot
        ('piv_slot = "9b"\n', False),  # the management key's slot holds no key pair
        ('piv_slot = "9A"\n', False),
        ('piv_slot = "9a"\n', False),  # the same slot as the audit key
    ],
)
def test_piv_slots_are_key_slots_and_distinct(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lines: str, ok: bool
) -> None:
    text = f"[pkcs11]\n{lines}"
    if ok:
        _load(tmp_path, monkeypatch, text)
    else:
        with pytest.raises(ConfigError, match="piv_"):
            _load(tmp_path, monkeypatch, text)


@pytest.mark.parametrize("value", ["always", "cached", "never"])
def test_touch_policy_takes_the_three_yubikey_policies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    _load(tmp_path, monkeypatch, f'[pkcs11]\ntouch_policy = "{value}"\n')


def test_an_unknown_touch_policy_names_the_allowed_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, monkeypatch, '[pkcs11]\ntouch_policy = "sometimes"\n')
    message = str(err.value)
    assert "\n" not in message and "pkcs11.touch_policy" in message
    assert all(f"'{allowed}'" in message for allowed in ("always", "cached", "never")), message
