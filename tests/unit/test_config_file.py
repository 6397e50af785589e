"""Which config file is read, and what happens when the named one is missing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from vaultd.errors import ConfigError
from vaultd.settings import load_settings


def test_an_explicit_config_that_does_not_exist_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "nonexistent.toml"
    monkeypatch.setenv("VAULTD_CONFIG", str(missing))
    with pytest.raises(
        ConfigError, match=r"VAULTD_CONFIG names .*nonexistent\.toml.*does not exist"
    ):
        load_settings()


def test_the_default_config_may_be_absent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VAULTD_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert load_settings().approval.timeout_seconds > 0


def test_a_command_with_a_missing_config_exits_non_zero_with_one_line(tmp_path: Path) -> None:
    env = {"VAULTD_CONFIG": str(tmp_path / "nonexistent.toml"), "HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "vaultd", "list"], env=env, capture_output=True, text=True
    )
    assert done.returncode != 0
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "CONFIG_INVALID" in lines[0] and "nonexistent.toml" in lines[0]


def _profiles_config(tmp_path: Path, role_extra: str = "") -> Path:
    config = tmp_path / "config.toml"
    config.write_text(
        "[profiles.work]\n"
        'credentials = "work"\n'
        'mfa_serial = "arn:aws:iam::123456789012:mfa/alice"\n'
        'approval = "touch"\n'
        "[profiles.work-admin]\n"
        'source_profile = "work"\n'
        'role_arn = "arn:aws:iam::123456789012:role/Admin"\n' + role_extra
    )
    config.chmod(0o600)
    return config


def test_a_chained_role_is_approved_like_its_source_profile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VAULTD_CONFIG", str(_profiles_config(tmp_path)))
    assert load_settings().profiles["work-admin"].approval.value == "touch"


def test_a_chained_role_may_name_its_own_approval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VAULTD_CONFIG", str(_profiles_config(tmp_path, 'approval = "code"\n')))
    assert load_settings().profiles["work-admin"].approval.value == "code"
