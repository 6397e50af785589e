"""Several profiles behind one MFA device (docs/threat-model.md T10, T11; F11).

Real `vaultd serve` and credential_process clients; FakeSts counts calls and records codes.
"""

from __future__ import annotations

import json

import pytest

from vaultd.testing.fake_sts import FakeSts
from vaultd.testing.harness import MFA_SERIAL, Installation, wait_for

from .conftest import MakeVault, credproc, finish

pytestmark = pytest.mark.hsm

PROFILES: dict[str, dict[str, object]] = {
    f"p{i}": {"credentials": "dev", "mfa_serial": MFA_SERIAL} for i in range(5)
}


def requests_audited(inst: Installation) -> int:
    lines = (inst.data_dir / "audit.log").read_text().splitlines()
    return sum(1 for line in lines if json.loads(line)["event"] == "request")


def pending(inst: Installation) -> list[dict[str, object]]:
    out: list[dict[str, object]] = json.loads(inst.vaultd("approvals", "--json").stdout)
    return out


def test_profiles_sharing_a_serial_prompt_one_at_a_time(
    make_vault: MakeVault, fake_sts: FakeSts
) -> None:
    """Row 11: 10 clients over 5 profiles on one serial: one pending approval at a time."""
    inst = make_vault(profiles=PROFILES)
    procs = [credproc(inst, f"p{i % 5}") for i in range(10)]
    try:
        assert wait_for(lambda: requests_audited(inst) == 10)  # every client is waiting
        assert len(pending(inst)) == 1
    finally:
        while approvals := pending(inst):
            for approval in approvals:
                inst.vaultd("deny", str(approval["id"]), check=False)
        for proc in procs:
            code, out, _ = finish(proc)
            assert code != 0 and out == b""
    assert fake_sts.calls() == 0


def test_each_profile_on_a_shared_serial_needs_its_own_fresh_code(
    make_vault: MakeVault, fake_sts: FakeSts
) -> None:
    """Row 11 / G6: one code is never sent twice, even for two profiles on one serial."""
    inst = make_vault(profiles=PROFILES)
    first = credproc(inst, "p0")
    assert wait_for(lambda: len(pending(inst)) == 1)
    inst.vaultd("approve", str(pending(inst)[0]["id"]), "--code", "111222")
    assert finish(first)[0] == 0
    second = credproc(inst, "p1")
    assert wait_for(lambda: len(pending(inst)) == 1)
    reused = inst.vaultd("approve", str(pending(inst)[0]["id"]), "--code", "111222", check=False)
    code, out, err = finish(second)
    assert code != 0 and out == b"" and b"CODE_REUSED" in err
    # The approval is answered, the ledger refuses the code, and `vaultd approve` says so.
    assert reused.returncode != 0 and b"CODE_REUSED" in reused.stderr
    sent = [r.token_code for r in fake_sts.requests if r.action == "GetSessionToken"]
    assert sent == ["111222"]
