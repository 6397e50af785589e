"""`vaultd setup aws-profile`: it writes only a socket path it verified (docs/threat-model.md
T29) and warns when ~/.aws/credentials overrides the profile; run through ``cli.main``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vaultd import cli

CONFIG = '[profiles.dev]\ncredentials = "dev"\nmfa_serial = "arn:aws:iam::123456789012:mfa/al"\n'


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    config = tmp_path / "config.toml"
    config.write_text(CONFIG)
    config.chmod(0o600)
    for name in list(os.environ):
        if name.startswith(("VAULTD_", "AWS_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("VAULTD_CONFIG", str(config))
    monkeypatch.setenv("VAULTD_SOCKET", str(tmp_path / "run" / "vaultd.sock"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    return tmp_path


def test_creates_the_socket_directory_private_and_writes_its_path(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["setup", "aws-profile", "dev"]) == 0
    assert (env / "run").stat().st_mode & 0o777 == 0o700
    assert f"--socket {env}/run/vaultd.sock -- dev" in (env / "aws-config").read_text()
    out, err = capsys.readouterr()
    assert "now gets credentials from vaultd" in out and err == ""


@pytest.mark.parametrize("mode", [0o777, 0o750, 0o1777])
def test_refuses_a_socket_directory_others_can_enter(
    env: Path, mode: int, capsys: pytest.CaptureFixture[str]
) -> None:
    (env / "run").mkdir()
    (env / "run").chmod(mode)
    assert cli.main(["setup", "aws-profile", "dev"]) != 0
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert err.startswith(f"vaultd: UNSAFE_PERMISSIONS: {env}/run has mode {mode:04o}")
    assert not (env / "aws-config").exists()


def test_refuses_a_symlinked_socket_directory(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (env / "elsewhere").mkdir(mode=0o700)
    (env / "run").symlink_to(env / "elsewhere")
    assert cli.main(["setup", "aws-profile", "dev"]) != 0
    assert "UNSAFE_PERMISSIONS" in capsys.readouterr().err
    assert not (env / "aws-config").exists()


def test_warns_when_the_credentials_file_still_has_keys_for_the_profile(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (env / "aws-credentials").write_text(
        "[other]\naws_access_key_id = AKIAOTHER\n\n[dev]\naws_access_key_id = AKIAEXAMPLE\n"
        "aws_secret_access_key = x\n"
    )
    assert cli.main(["setup", "aws-profile", "dev"]) == 0
    _out, err = capsys.readouterr()
    assert err == (
        f"vaultd: WARNING: {env}/aws-credentials still has keys for profile 'dev' and the AWS "
        "CLI uses them first: delete its [dev] section once `vaultd add` has sealed them\n"
    )
    assert "AKIAEXAMPLE" not in err


def test_no_warning_for_keys_of_other_profiles(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (env / "aws-credentials").write_text("[other]\naws_access_key_id = AKIAOTHER\n")
    assert cli.main(["setup", "aws-profile", "dev"]) == 0
    assert capsys.readouterr().err == ""
