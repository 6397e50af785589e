"""Audit reconciliation on a real daemon (docs/threat-model.md T14, G4): releases = release records.

Every credential_process output that left the daemon has exactly one fsynced ``release``
record, and the chain verifies with the token's MAC afterwards.
"""

from __future__ import annotations

import json

import pytest

from vaultd.testing.fake_sts import FakeSts
from vaultd.testing.harness import Installation, approve_pending, wait_for

from .conftest import MakeVault, credproc, finish
from .test_concurrency_approvals import kill, pending

pytestmark = pytest.mark.hsm


def release_records(inst: Installation) -> int:
    lines = (inst.data_dir / "audit.log").read_text().splitlines()
    return sum(1 for line in lines if json.loads(line)["event"] == "release")


def test_every_output_has_one_release_record_and_the_chain_verifies(
    make_vault: MakeVault, fake_sts: FakeSts
) -> None:
    """G4: N successful clients (cold, then cached) give exactly N release records."""
    inst = make_vault()
    first = credproc(inst, "dev")
    approve_pending(inst, "123456", profile="dev")
    delivered = [finish(first)]
    delivered += [finish(credproc(inst, "dev"), timeout=10) for _ in range(9)]
    refused = finish(credproc(inst, "nope"), timeout=10)
    assert [code for code, _, _ in delivered] == [0] * 10
    assert refused[0] != 0 and refused[1] == b""
    assert release_records(inst) == 10
    inst.stop_daemon()
    verified = inst.vaultd("audit", "verify")
    assert verified.stdout.startswith(b"OK")


def test_a_late_approval_for_a_dead_client_is_not_recorded_as_a_release(
    make_vault: MakeVault, fake_sts: FakeSts
) -> None:
    """Row 13: the late approval fills the cache and is audited, but released nothing."""
    inst = make_vault()
    leaver = credproc(inst, "dev")
    assert wait_for(lambda: len(pending(inst)) == 1)
    kill(leaver)
    (approval,) = pending(inst)
    inst.vaultd("approve", str(approval["id"]), "--code", "345678")
    assert wait_for(lambda: fake_sts.calls("GetSessionToken") == 1)
    code, _, err = finish(credproc(inst, "dev"), timeout=10)
    assert code == 0, err
    assert release_records(inst) == 1
