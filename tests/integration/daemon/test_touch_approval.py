"""Touch-to-approve end to end: a software CTAP2 authenticator (python-fido2's CtapDevice
interface; no USB in CI), a sealed AWS MFA seed, a real daemon, FakeSts and the AWS CLI.

No code is typed: the daemon verifies the touch, generates the TokenCode from the seed and
never sends one twice.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pyotp

from vaultd.core.records import seed_record_name
from vaultd.testing.fake_sts import FakeSts
from vaultd.testing.harness import MFA_SERIAL, Installation, read_until
from vaultd.testing.soft_ctap2 import SoftCtap2Device

from .test_approval_unavailable import credproc as pty_credproc
from .test_approval_unavailable import finish as pty_finish
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


def test_the_requesting_terminal_sees_every_state_and_a_cache_hit_sees_nothing(
    make_vault: MakeVault, fake_sts: FakeSts, tmp_path: Path
) -> None:
    """Through a pty: the touch prompt, calling STS, the outcome; a cached session is served
    without a line; once the current code was used, the wait for the next one is shown there
    and listed by `vaultd approvals`."""
    inst = touch_vault(make_vault, tmp_path)
    master, slave = os.openpty()
    try:
        client = pty_credproc(inst, stdin=slave)
        first = read_until(master, b"credentials issued")
        assert pty_finish(client)[0] == 0
        assert b"touch your security key for profile dev" in first, first
        assert b"program" in first and b"calling STS" in first, first
        assert b"approved elsewhere" not in first, first
        assert pty_finish(pty_credproc(inst, stdin=slave))[0] == 0  # cached
        assert select.select([master], [], [], 0)[0] == []  # not a line on the terminal
        inst.vaultd("lock")
        spent = _until_the_used_step_nearly_ends(inst)
        client = pty_credproc(inst, stdin=slave)
        shown = read_until(master, b"(AWS accepts each code once)")
        assert b"touch received, waiting " in shown, shown
        listed = inst.vaultd("approvals").stdout
        assert b"dev  answered: touch received, waiting" in listed, listed
        shown += read_until(master, b"credentials issued")
        assert pty_finish(client)[0] == 0
        assert shown.index(b"waiting") < shown.index(b"calling STS"), shown
    finally:
        os.close(master)
        os.close(slave)
    assert fake_sts.calls("GetSessionToken") == 2 + spent


def _until_the_used_step_nearly_ends(inst: Installation) -> int:
    """The current TOTP step was just used: sleep until it has about 3 s left, so the next
    touch waits that long for the next step (a short real wait, no fake clock).  With less than
    that left, the next step is spent first.  Returns the number of sessions this made."""
    spent = 0
    if 30 - time.time() % 30 < 4:
        time.sleep(30 - time.time() % 30 + 0.1)
        assert finish(credproc(inst, "dev"), timeout=60)[0] == 0
        inst.vaultd("lock")
        spent = 1
    time.sleep(max(0.0, 27 - time.time() % 30))
    return spent


def test_no_key_plugged_in_is_its_own_code(
    make_vault: MakeVault, fake_sts: FakeSts, tmp_path: Path
) -> None:
    inst = touch_vault(make_vault, tmp_path)
    (tmp_path / "key1.json").rename(tmp_path / "unplugged.json")
    code, out, err = finish(credproc(inst, "dev"), timeout=90)
    assert code != 0 and out == b""
    assert err.startswith(b"vaultd: FIDO2_NO_DEVICE: ") and err.count(b"\n") == 1, err
    assert fake_sts.calls() == 0
