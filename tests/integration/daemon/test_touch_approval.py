"""Touch-to-approve end to end: a software CTAP2 authenticator (python-fido2's CtapDevice
interface; no USB in CI), a sealed AWS MFA seed, a real daemon, FakeSts and the AWS CLI.

No code is typed: the daemon verifies the touch, generates the TokenCode from the seed and
never sends one twice.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pyotp

from vaultd.core.records import seed_record_name
from vaultd.testing.fake_sts import FakeSts
from vaultd.testing.harness import MFA_SERIAL, Installation
from vaultd.testing.soft_ctap2 import SoftCtap2Device

from .test_daemon_credentials import credproc, finish

MakeVault = Callable[..., Installation]
SEED = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


def touch_vault(make_vault: MakeVault, tmp_path: Path, approval: str = "touch") -> Installation:
    device = tmp_path / "key1.json"
    inst = make_vault(
        profiles={
            "dev": {"credentials": "dev", "mfa_serial": MFA_SERIAL, "approval": approval},
            "admin": {
                "source_profile": "dev",
                "role_arn": "arn:aws:iam::123456789012:role/Admin",
                "approval": approval,
            },
        },
        extra={"fido2": {"devices": [f"soft:{device}"]}},
        start=False,
    )
    SoftCtap2Device(device).set_touch("auto", 0.05)
    inst.vaultd("mfa", "add-totp", MFA_SERIAL, input=SEED.encode())
    inst.vaultd("fido2", "enroll", "--name", "key1")
    inst.start_daemon()
    return inst


def test_one_touch_serves_the_aws_cli_with_a_generated_never_reused_code(
    make_vault: MakeVault, fake_sts: FakeSts, tmp_path: Path
) -> None:
    inst = touch_vault(make_vault, tmp_path)
    before = datetime.now(UTC)
    aws = [sys.executable, "-m", "awscli", "sts", "get-caller-identity", "--profile", "admin"]
    done = subprocess.run(aws, env=inst.env, capture_output=True, timeout=90, check=False)
    after = datetime.now(UTC)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["Account"] == "123456789012"
    assert fake_sts.calls("AssumeRole") == 1
    (sent,) = [r for r in fake_sts.requests if r.action == "GetSessionToken"]
    totp = pyotp.TOTP(SEED)
    valid = {totp.at(t) for t in (before, after)} | {totp.at(after.timestamp() + 30)}
    assert sent.token_code in valid
    assert sent.serial_number == MFA_SERIAL
    assert SEED.encode() not in done.stderr + done.stdout
    # The seed never reaches disk in the clear, nor the audit log.
    for path in inst.data_dir.iterdir():
        if path.is_file():
            assert SEED.encode() not in path.read_bytes()
    audit = (inst.data_dir / "audit.log").read_text()
    assert '"fido2_touch"' in audit
    # Lock, then a second touch: a different code (the next step when needed).
    inst.vaultd("lock")
    code, _, err = finish(credproc(inst, "dev"), timeout=90)
    assert code == 0, err
    codes = [r.token_code for r in fake_sts.requests if r.action == "GetSessionToken"]
    assert len(codes) == 2 and codes[0] != codes[1]


def test_refused_touch_releases_nothing(
    make_vault: MakeVault, fake_sts: FakeSts, tmp_path: Path
) -> None:
    inst = touch_vault(make_vault, tmp_path)
    SoftCtap2Device(tmp_path / "key1.json").set_touch("refuse", 0.05)
    code, out, err = finish(credproc(inst, "dev"), timeout=90)
    assert code != 0 and out == b""
    assert fake_sts.calls() == 0
    assert b"vaultd: " in err


def test_counter_regression_marks_the_key_suspect_and_releases_nothing(
    make_vault: MakeVault, fake_sts: FakeSts, tmp_path: Path
) -> None:
    inst = touch_vault(make_vault, tmp_path)
    SoftCtap2Device(tmp_path / "key1.json").tamper_next(counter=0)
    code, out, err = finish(credproc(inst, "dev"), timeout=90)
    assert code != 0 and out == b""
    assert b"FIDO2_SUSPECT" in err
    assert fake_sts.calls() == 0
    listed = json.loads(inst.vaultd("fido2", "list", "--json").stdout)
    assert listed[0]["suspect"] is True


def test_touch_profile_without_a_seed_fails_closed(
    make_vault: MakeVault, fake_sts: FakeSts, tmp_path: Path
) -> None:
    inst = make_vault(
        profiles={"dev": {"credentials": "dev", "mfa_serial": MFA_SERIAL, "approval": "touch"}},
    )
    code, out, err = finish(credproc(inst, "dev"), timeout=30)
    assert code != 0 and out == b""
    assert b"APPROVAL_UNAVAILABLE" in err and b"mfa add-totp" in err
    assert fake_sts.calls() == 0


def test_the_report_counts_the_enrolled_authenticators(
    make_vault: MakeVault, fake_sts: FakeSts, tmp_path: Path
) -> None:
    """The daemon hands the report its enrolled FIDO2 credentials (it once passed none)."""
    inst = touch_vault(make_vault, tmp_path)
    (row,) = json.loads(inst.vaultd("report", "--json").stdout)
    assert row["name"] == "dev" and row["mfa_method"] == ["touch"]
    assert row["authenticators"] == 1
    assert row["profiles"] == ["admin", "dev"]


def test_list_shows_a_seed_by_its_mfa_device_under_headers(
    make_vault: MakeVault, fake_sts: FakeSts, tmp_path: Path
) -> None:
    inst = touch_vault(make_vault, tmp_path)
    out = inst.vaultd("list").stdout.decode()
    records, sessions = out.split("\nsessions:\n")
    header, *rows = records.splitlines()
    assert header.split() == ["NAME", "(MFA", "DEVICE", "FOR", "SEEDS)", "KIND", "KEY", "ID",
                              "STORED"]  # fmt: skip
    (seed,) = [r for r in rows if " totp_seed " in r]
    assert seed.startswith(MFA_SERIAL + " ") and seed_record_name(MFA_SERIAL) not in out
    assert sessions.splitlines()[0].split() == ["PROFILE", "SESSION"]
