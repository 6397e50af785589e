"""`vaultd import aws-config` end to end: SoftHSM2, moto STS, a real daemon, the real AWS CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from vaultd.testing.harness import Installation, approve_pending

from .conftest import AWS_CONFIG, AWS_CREDENTIALS, KEY_ID, SECRET, SERIAL, home_env

pytestmark = [pytest.mark.hsm, pytest.mark.sts]

IMPORTED = ("jon", "admin", "long", "partner")


def vaultd(inst: Installation, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "vaultd", *args],
        env=home_env(inst),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # no terminal: approvals come from `vaultd approve`
    )


def finish(proc: subprocess.Popen[bytes]) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=90)
    return proc.returncode, out.decode(), err.decode()


def files_holding_the_secret(home: Path) -> list[Path]:
    return sorted(p for p in home.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes())


def approvals_opened(inst: Installation) -> int:
    return (inst.data_dir / "audit.log").read_text().count('"approval_opened"')


def test_dry_run_prints_the_plan_and_writes_nothing(vault: Installation) -> None:
    home = Path(home_env(vault)["HOME"])
    config_before = vault.config_path.read_text()
    code, out, err = finish(vaultd(vault, "import", "aws-config"))
    assert code == 0, err
    assert f"jon: vaultd profile credentials=jon, mfa_serial={SERIAL}, region=eu-west-1" in out
    assert "long: vaultd profile source_profile=jon" in out and "duration_seconds=7200" in out
    assert "external_id=partner-2024" in out
    assert "other: left alone: no mfa_serial" in out
    assert "default: left alone" in out
    assert "AKIA************0001" in out and KEY_ID not in out and SECRET not in out
    assert "dry run" in out
    assert (home / ".aws" / "config").read_text() == AWS_CONFIG
    assert (home / ".aws" / "credentials").read_text() == AWS_CREDENTIALS
    assert vault.config_path.read_text() == config_before


def test_import_seals_the_keys_and_every_profile_works_with_the_aws_cli(
    vault: Installation,
) -> None:
    home = Path(home_env(vault)["HOME"])
    # No daemon yet: everything is written but the plaintext keys stay (no test call possible).
    code, out, err = finish(vaultd(vault, "import", "aws-config", "--apply", "--remove-plaintext"))
    assert code != 0 and "DAEMON_NOT_RUNNING" in err, (out, err)
    assert "the plaintext keys stay" in out
    assert files_holding_the_secret(home) == [home / ".aws" / "credentials"]
    listed = vault.vaultd("list", "--json").stdout
    assert [r["name"] for r in json.loads(listed)] == ["jon"]
    toml = vault.config_path.read_text()
    assert toml.count("[profiles.") == 4 and "duration_seconds = 7200" in toml

    vault.start_daemon()
    proc = vaultd(vault, "import", "aws-config", "--apply", "--remove-plaintext")
    approve_pending(vault, "123456", profile="jon")
    code, out, err = finish(proc)
    assert code == 0, err
    backup = next((home / ".aws").glob("credentials.vaultd-backup-*"))
    assert f"shred -u {backup}" in out
    assert files_holding_the_secret(home) == [backup]
    assert backup.stat().st_mode & 0o777 == 0o600
    assert KEY_ID not in (home / ".aws" / "credentials").read_text()
    assert "AKIAOTHER00000000001" in (home / ".aws" / "credentials").read_text()
    config = (home / ".aws" / "config").read_text()
    assert "# written by hand, years ago" in config and "# the partner's account" in config
    assert config.count("credential_process = ") == 4

    for profile in IMPORTED:
        aws = [sys.executable, "-m", "awscli", "sts", "get-caller-identity", "--profile", profile]
        cli = subprocess.Popen(
            aws,
            env=home_env(vault, AWS_DEFAULT_REGION="us-east-1"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        if profile == "long":  # longer than a chained role may last: its own MFA session
            approve_pending(vault, "654321", profile="long")
        code, out, err = finish(cli)
        assert code == 0, (profile, err)
        assert json.loads(out)["Account"] == "123456789012"
    assert approvals_opened(vault) == 2

    # Idempotent: a third run changes nothing and asks for nothing.
    before = {p: p.read_bytes() for p in home.rglob("*") if p.is_file()}
    toml_before = vault.config_path.read_text()
    code, out, err = finish(vaultd(vault, "import", "aws-config", "--apply", "--remove-plaintext"))
    assert code == 0, err
    assert {p: p.read_bytes() for p in home.rglob("*") if p.is_file()} == before
    assert vault.config_path.read_text() == toml_before
    assert approvals_opened(vault) == 2
