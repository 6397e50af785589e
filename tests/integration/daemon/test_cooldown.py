"""A denied approval cools down its own profile only; `vaultd approvals` and `vaultd status`
show the seconds left, and `vaultd approvals --clear-cooldown PROFILE` ends it."""

from __future__ import annotations

import json
from collections.abc import Callable

from vaultd.testing.fake_sts import FakeSts
from vaultd.testing.harness import MFA_SERIAL, Installation, approve_pending, wait_for

from .test_daemon_credentials import credproc, finish

MakeVault = Callable[..., Installation]
PROFILES = {
    "dev": {"credentials": "dev", "mfa_serial": MFA_SERIAL},
    "ops": {"credentials": "dev", "mfa_serial": MFA_SERIAL},
}


def pending(inst: Installation) -> list[dict[str, object]]:
    listed: list[dict[str, object]] = json.loads(inst.vaultd("approvals", "--json").stdout)
    return listed


def deny_dev(inst: Installation) -> None:
    proc = credproc(inst, "dev")
    assert wait_for(lambda: bool(pending(inst)))
    inst.vaultd("deny", str(pending(inst)[0]["id"]))
    code, out, err = finish(proc)
    assert code != 0 and out == b"" and b"DENIED" in err


def test_a_deny_cools_down_its_profile_only_until_cleared(
    make_vault: MakeVault, fake_sts: FakeSts
) -> None:
    inst = make_vault(profiles=PROFILES)
    deny_dev(inst)
    code, out, err = finish(credproc(inst, "dev"))
    assert code != 0 and out == b"" and b"COOLDOWN" in err and b"retry after" in err
    assert b"--clear-cooldown dev" in err
    listed = inst.vaultd("approvals").stdout.decode()
    assert "profile dev: denied, cooldown " in listed and "--clear-cooldown dev" in listed
    assert "ops" not in listed
    status = inst.vaultd("status").stdout.decode()
    (dev_line,) = [line for line in status.splitlines() if line.strip().startswith("dev ")]
    assert "denied, cooldown " in dev_line
    assert list(json.loads(inst.vaultd("status", "--json").stdout)["cooldowns"]) == ["dev"]

    other = credproc(inst, "ops")  # another profile is asked, not refused
    approve_pending(inst, "123456", profile="ops")
    assert finish(other)[0] == 0

    cleared = inst.vaultd("approvals", "--clear-cooldown", "dev")
    assert cleared.stdout.startswith(b"cooldown of profile dev ended\n")
    assert b"cooldown" not in cleared.stdout.splitlines()[-1]
    again = credproc(inst, "dev")
    approve_pending(inst, "654321", profile="dev")
    assert finish(again)[0] == 0
    assert fake_sts.calls("GetSessionToken") == 2
    audit = (inst.data_dir / "audit.log").read_text()
    assert '"cooldown_cleared"' in audit


def test_clear_cooldown_refuses_a_bad_profile_in_one_line(
    make_vault: MakeVault, fake_sts: FakeSts
) -> None:
    inst = make_vault(profiles=PROFILES)
    deny_dev(inst)
    for bad, code in (("nosuch", b"UNKNOWN_PROFILE"), ("bad name", b"BAD_REQUEST")):
        done = inst.vaultd("approvals", "--clear-cooldown", bad, check=False)
        assert done.returncode != 0 and done.stdout == b""
        assert done.stderr.count(b"\n") == 1 and code in done.stderr, done.stderr
    assert list(json.loads(inst.vaultd("status", "--json").stdout)["cooldowns"]) == ["dev"]
    assert fake_sts.calls() == 0
