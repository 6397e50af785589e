"""Code guessing stays bounded across a real daemon restart (docs/threat-model.md T12, F17, G7).

Real `vaultd serve` (SoftHSM2 token, real socket, persisted state file) and the stdlib
credential_process client.  STS is FakeSts: no real peer answers AccessDenied for a wrong MFA
code on demand (moto accepts any code), and FakeSts counts every call.

The 20-consecutive-failure lock cannot be reached through a real daemon in a test: after the
5th failure each further try waits out a wall-clock delay (the 5-minute window, then 30 s
doubling per failure, capped at 1 h), about 9 hours to reach 20, and the daemon runs on the
system clock.  ``test_a_persisted_lock_survives_restarts`` therefore writes the ledger state
that 20 failures leave (built with the ledger's own ``record_failure``) before the daemon
starts, and proves the daemon honours it and keeps it across a restart.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from vaultd.app import STATE_FILE
from vaultd.core.otp_ledger import LOCK_AFTER_FAILURES, OtpLedger
from vaultd.errors import MfaLocked, RateLimited
from vaultd.ipc.client import DaemonClient
from vaultd.store.state import StateFile
from vaultd.testing.fake_sts import FakeSts, Fault
from vaultd.testing.harness import MFA_SERIAL, Installation, approve_pending

from .conftest import MakeVault, credproc, finish

pytestmark = pytest.mark.hsm

NO_COOLDOWN = {"approval": {"cooldown_seconds": 0}}


def pending(inst: Installation) -> list[object]:
    out: list[object] = json.loads(inst.vaultd("approvals", "--json").stdout)
    return out


def refused_locally(inst: Installation, code: str) -> None:
    """One credential_process run is refused with ``code``: empty stdout, nothing pending."""
    status, out, err = finish(credproc(inst, "dev"), timeout=15)
    assert status != 0 and out == b""
    assert code.encode() in err, err
    assert pending(inst) == []


def rate_limited_retry_after(inst: Installation) -> float:
    """Ask over the socket and return the ``retry_after`` of the ``RATE_LIMITED`` reply."""
    with pytest.raises(RateLimited) as refused:
        DaemonClient(inst.socket, timeout=15).request("credentials", profile="dev")
    return refused.value.retry_after


def restart(inst: Installation) -> None:
    assert inst.stop_daemon() == 0
    inst.start_daemon()


def test_five_wrong_codes_then_rate_limited_across_a_restart(
    make_vault: MakeVault, fake_sts: FakeSts
) -> None:
    """T12: AccessDenied 5 times; attempt 6 and the first after a restart: 0 STS calls."""
    inst = make_vault(extra=NO_COOLDOWN)
    fake_sts.inject(Fault(error_code="AccessDenied"), times=None, action="GetSessionToken")
    for i in range(5):
        proc = credproc(inst, "dev")
        approve_pending(inst, f"81000{i}", profile="dev")
        status, out, err = finish(proc)
        assert status != 0 and out == b""
        assert b"MFA_REJECTED" in err, err
    assert fake_sts.calls("GetSessionToken") == 5

    refused_locally(inst, "RATE_LIMITED")
    assert rate_limited_retry_after(inst) > 0
    assert fake_sts.calls("GetSessionToken") == 5

    restart(inst)
    refused_locally(inst, "RATE_LIMITED")
    assert rate_limited_retry_after(inst) > 0
    assert fake_sts.calls() == 5  # no STS call of any kind after the fifth failure


def test_a_persisted_lock_survives_restarts(make_vault: MakeVault, fake_sts: FakeSts) -> None:
    """T12: the state of 20 consecutive failures gives `MFA_LOCKED` before and after a restart.

    The state is planted before the first start (see the module docstring for why a real
    daemon cannot reach it); no STS call and no approval happen.
    """
    inst = make_vault(extra=NO_COOLDOWN, start=False)
    ledger = OtpLedger()
    for _ in range(LOCK_AFTER_FAILURES):
        ledger.record_failure(MFA_SERIAL, datetime.now(UTC))
    StateFile(inst.data_dir / STATE_FILE).save_ledger(ledger.to_dict())

    inst.start_daemon()
    refused_locally(inst, "MFA_LOCKED")
    restart(inst)
    refused_locally(inst, "MFA_LOCKED")
    with pytest.raises(MfaLocked):
        DaemonClient(inst.socket, timeout=15).request("credentials", profile="dev")
    assert fake_sts.calls() == 0
    saved = StateFile(inst.data_dir / STATE_FILE).load_ledger()
    assert saved is not None and OtpLedger.from_dict(saved).is_locked(MFA_SERIAL)
