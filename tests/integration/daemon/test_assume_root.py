"""Break-glass with sts:AssumeRoot end to end (docs/threat-model.md T18, issue 15): a real daemon,
SoftHSM2, the software CTAP2 authenticator (touch with UV through its PIN) and FakeSts, which
validates AssumeRoot as AWS documents it (moto does not implement AssumeRoot)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fido2.ctap2 import Ctap2
from fido2.ctap2.pin import ClientPin

from vaultd.errors import BadRequest, VaultError
from vaultd.ipc.client import DaemonClient
from vaultd.testing.fake_sts import FakeSts
from vaultd.testing.harness import Installation, read_until, spawn_in_pty
from vaultd.testing.soft_ctap2 import SoftCtap2Device

ADMIN_SERIAL = "arn:aws:iam::123456789012:mfa/org-admin"
ADMIN_KEY = "AKIAORGADMIN00000001"
ADMIN_SECRET = "OrgAdminSecret00000000000000000000000001"
MEMBER = "111122223333"
AUDIT_TASK = "arn:aws:iam::aws:policy/root-task/IAMAuditRootUserCredentials"
PIN = "4321"
REASON = "audit member root INC-7"


def profiles(**member: object) -> dict[str, dict[str, object]]:
    return {
        "dev": {"credentials": "dev", "mfa_serial": "arn:aws:iam::123456789012:mfa/alice"},
        "org-admin": {
            "credentials": "org-admin",
            "mfa_serial": ADMIN_SERIAL,
            "region": "eu-west-1",
        },
        "member-root": {
            "source_profile": "org-admin",
            "assume_root_account": MEMBER,
            "assume_root_task": "IAMAuditRootUserCredentials",
            **member,
        },
    }


@pytest.fixture
def org_vault(make_vault: Any, tmp_path: Path) -> Installation:
    device = tmp_path / "key1.json"
    inst: Installation = make_vault(
        profiles=profiles(), extra={"fido2": {"devices": [f"soft:{device}"]}}, start=False
    )
    SoftCtap2Device(device).set_touch("auto", 0.05)
    inst.vaultd("fido2", "enroll", "--name", "key1")
    ClientPin(Ctap2(SoftCtap2Device(device))).set_pin(PIN)
    inst.add_key_pair("org-admin", ADMIN_KEY, ADMIN_SECRET)
    inst.start_daemon()
    return inst


def break_glass(
    inst: Installation, *args: str, factors: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    body = json.dumps(factors or {"code": "123456", "pin": PIN}).encode()
    return inst.vaultd("break-glass", *args, input=body, check=False)


def audit(inst: Installation) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (inst.data_dir / "audit.log").read_text().splitlines()]


def test_assume_root_after_uv_touch_and_a_fresh_mfa_session(
    org_vault: Installation, fake_sts: FakeSts
) -> None:
    done = break_glass(org_vault, "member-root", "--reason", REASON)
    assert done.returncode == 0, done.stderr
    exports = dict(
        line.removeprefix("export ").split("=", 1) for line in done.stdout.decode().splitlines()
    )
    fresh, root = fake_sts.requests
    assert (fresh.action, fresh.access_key_id) == ("GetSessionToken", ADMIN_KEY)
    assert (fresh.serial_number, fresh.token_code) == (ADMIN_SERIAL, "123456")
    assert fresh.duration_seconds == 900
    assert root.action == "AssumeRoot" and root.session_token_sent
    assert root.access_key_id != ADMIN_KEY  # the fresh MFA session, not the stored keys
    assert (root.target_principal, root.task_policy_arn) == (MEMBER, AUDIT_TASK)
    assert root.duration_seconds == 900
    assert (root.region, root.endpoint) == ("eu-west-1", "regional")
    assert exports["AWS_ACCESS_KEY_ID"].startswith("ASIA")
    assert ADMIN_SECRET.encode() not in done.stdout + done.stderr
    events = {(a["event"], a.get("break_glass"), a.get("severity")) for a in audit(org_vault)}
    for step in ("breakglass_requested", "breakglass_factor", "breakglass_assume_root",
                 "breakglass_granted", "breakglass_read", "breakglass_ended"):  # fmt: skip
        assert (step, True, "critical") in events
    assumed = next(a for a in audit(org_vault) if a["event"] == "breakglass_assume_root")
    assert (assumed["target_account"], assumed["task"]) == (MEMBER, "IAMAuditRootUserCredentials")


def test_every_grant_makes_a_new_mfa_session(org_vault: Installation, fake_sts: FakeSts) -> None:
    """The MFA age is part of the proof: nothing is cached, each grant needs its own code."""
    for code in ("123456", "654321"):
        assert break_glass(org_vault, "member-root", "--reason", REASON, factors={
            "code": code, "pin": PIN}).returncode == 0  # fmt: skip
    assert [r.action for r in fake_sts.requests] == ["GetSessionToken", "AssumeRoot"] * 2
    assert [r.token_code for r in fake_sts.requests if r.token_code] == ["123456", "654321"]
    again = break_glass(org_vault, "member-root", "--reason", REASON, factors={
        "code": "654321", "pin": PIN})  # fmt: skip
    assert again.returncode != 0 and b"CODE_REUSED" in again.stderr
    assert fake_sts.calls() == 4


def test_the_grant_goes_to_the_requester_once(org_vault: Installation, fake_sts: FakeSts) -> None:
    client = DaemonClient(org_vault.socket)
    reply = client.request(
        "breakglass", profile="member-root", reason=REASON, code="222222", pin=PIN,
        task="S3UnlockBucketPolicy",
    )  # fmt: skip
    grant = reply["grant"]
    assert isinstance(grant, dict)
    # The session comes once, on the requesting connection; no op hands it out by id.
    assert isinstance(reply["output"], dict) and reply["output"]["Version"] == 1
    with pytest.raises(BadRequest):
        client.request("grant", id=str(grant["id"]))
    sent = fake_sts.requests[-1].task_policy_arn
    assert sent is not None and sent.endswith("/S3UnlockBucketPolicy")


def test_without_user_verification_nothing_reaches_sts(
    org_vault: Installation, fake_sts: FakeSts
) -> None:
    done = break_glass(org_vault, "member-root", "--reason", REASON, factors={"code": "123456"})
    assert done.returncode != 0 and done.stdout == b""
    assert fake_sts.calls() == 0


def test_the_readme_command_form_runs_the_command(
    org_vault: Installation, fake_sts: FakeSts
) -> None:
    """Issue 16: `vaultd break-glass root --reason "..." -- sh -c '...'` as README.md has it."""
    done = break_glass(
        org_vault, "member-root", "--reason", "prod outage INC-42", "--",
        "sh", "-c", 'test -n "$AWS_SESSION_TOKEN" && echo "root session $AWS_ACCESS_KEY_ID"',
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(b"root session ASIA")
    other_order = break_glass(
        org_vault, "--reason", "prod outage INC-42", "member-root", "--", "sh", "-c", "exit 3",
        factors={"code": "222333", "pin": PIN},
    )  # fmt: skip
    assert other_order.returncode == 3, other_order.stderr


def test_credential_process_says_why_and_releases_nothing(
    org_vault: Installation, fake_sts: FakeSts
) -> None:
    done = org_vault.vaultd("credential-process", "member-root", check=False)
    assert done.returncode != 0 and done.stdout == b""
    (line,) = done.stderr.decode().splitlines()
    assert "BREAK_GLASS_ONLY" in line and "900 s" in line and "vaultd break-glass" in line
    assert fake_sts.calls() == 0


def test_a_policy_can_allow_only_the_audit_task(
    make_vault: Any, fake_sts: FakeSts, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": "vaultd:AssumeRoot", "Resource": "profile/*",
        "Condition": {"StringEquals": {"vaultd:RootTask": "IAMAuditRootUserCredentials",
                                       "vaultd:TargetAccount": MEMBER}},
    }]}))  # fmt: skip
    policy.chmod(0o600)
    device = tmp_path / "key2.json"
    inst: Installation = make_vault(
        profiles=profiles(),
        extra={"fido2": {"devices": [f"soft:{device}"]}, "policy_file": str(policy)},
        start=False,
    )
    SoftCtap2Device(device).set_touch("auto", 0.05)
    inst.vaultd("fido2", "enroll", "--name", "key2")
    ClientPin(Ctap2(SoftCtap2Device(device))).set_pin(PIN)
    inst.add_key_pair("org-admin", ADMIN_KEY, ADMIN_SECRET)
    inst.start_daemon()
    denied = break_glass(inst, "member-root", "--reason", REASON, "--task", "S3UnlockBucketPolicy")
    assert denied.returncode != 0 and b"ACCESS_DENIED_BY_POLICY" in denied.stderr
    assert fake_sts.calls() == 0
    allowed = break_glass(inst, "member-root", "--reason", REASON)
    assert allowed.returncode == 0, allowed.stderr
    assert fake_sts.requests[-1].task_policy_arn == AUDIT_TASK


# --- bad input: one line, before any prompt, nothing sent ---------------------------------


def _on_a_terminal(inst: Installation, *args: str) -> tuple[int, str]:
    """Run `vaultd break-glass ARGS` with a pty as its terminal; return the exit status and
    everything it showed there (a prompt would show)."""
    proc, master = spawn_in_pty([sys.executable, "-m", "vaultd", "break-glass", *args], inst.env)
    try:
        seen = read_until(master, None, 30)  # all it showed, until it closed the pty
        status = proc.wait(5)
    finally:
        os.close(master)
    return status, seen.decode(errors="replace")


@pytest.mark.parametrize(
    ("member", "field"),
    [
        ({"assume_root_task": "IAMEverything"}, "assume_root_task"),
        ({"duration_seconds": 901}, "duration_seconds"),
        ({"assume_root_account": "123456789012"}, "management account"),
        ({"assume_root_account": "1111"}, "12-digit"),
    ],
)
def test_bad_profiles_fail_in_one_line_before_any_prompt(
    org_vault: Installation, fake_sts: FakeSts, member: dict[str, object], field: str
) -> None:
    org_vault.config["profiles"] = profiles(**member)
    org_vault.write_config()
    status, shown = _on_a_terminal(org_vault, "member-root", "--reason", REASON)
    assert status != 0
    (line,) = shown.strip().splitlines()
    assert line.startswith("vaultd: CONFIG_INVALID") and field in line
    assert fake_sts.calls() == 0


def test_a_source_profile_without_mfa_is_refused_before_any_prompt(
    org_vault: Installation, fake_sts: FakeSts
) -> None:
    config = profiles()
    del config["org-admin"]["mfa_serial"]
    org_vault.config["profiles"] = config
    org_vault.write_config()
    status, shown = _on_a_terminal(org_vault, "member-root", "--reason", REASON)
    (line,) = shown.strip().splitlines()
    assert status != 0 and line.startswith("vaultd: CONFIG_INVALID")
    assert "profiles.org-admin" in line and "mfa_serial" in line
    assert fake_sts.calls() == 0


def test_the_global_endpoint_is_refused_before_any_prompt(
    org_vault: Installation, fake_sts: FakeSts
) -> None:
    org_vault.sts_url = "https://sts.amazonaws.com"
    status, shown = _on_a_terminal(org_vault, "member-root", "--reason", REASON)
    (line,) = shown.strip().splitlines()
    assert status != 0 and line.startswith("vaultd: CONFIG_INVALID")
    assert "Regional" in line
    assert fake_sts.calls() == 0


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (("--task", "IAMEverything"), "CONFIG_INVALID"),
        (("--account", "123456789012"), "CONFIG_INVALID"),
    ],
)
def test_bad_picks_are_refused_by_the_daemon_before_the_touch(
    org_vault: Installation, fake_sts: FakeSts, args: tuple[str, ...], code: str
) -> None:
    """The daemon repeats the checks: a client that skips the CLI gets the same refusal, and
    no approval (touch) is opened."""
    client = DaemonClient(org_vault.socket)
    pick = {args[0].removeprefix("--"): args[1]}
    with pytest.raises(VaultError) as raised:
        client.request(
            "breakglass", profile="member-root", reason=REASON, code="123456", pin=PIN, **pick
        )
    assert raised.value.code == code
    assert fake_sts.calls() == 0
    assert not [a for a in audit(org_vault) if a["event"] == "approval_opened"]
