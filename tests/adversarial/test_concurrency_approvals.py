"""Clients that leave, approvals that come late, approvers that are absent (§3 rows 6, 13, 14).

Real `vaultd serve`, real credential_process clients, FakeSts counting STS calls.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess

import pytest

from vaultd.testing.fake_sts import FakeSts
from vaultd.testing.harness import Installation, wait_for

from .conftest import MakeVault, credproc, finish, raw_connect, read_frame

pytestmark = pytest.mark.hsm


def pending(inst: Installation) -> list[dict[str, object]]:
    out: list[dict[str, object]] = json.loads(inst.vaultd("approvals", "--json").stdout)
    return out


def audit_events(inst: Installation) -> list[dict[str, object]]:
    lines = (inst.data_dir / "audit.log").read_text().splitlines()
    return [json.loads(line) for line in lines]


def kill(proc: subprocess.Popen[bytes]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    finish(proc)


def test_client_leaving_keeps_the_approval_for_other_waiters(
    make_vault: MakeVault, fake_sts: FakeSts
) -> None:
    """Row 6: one of two waiters dies; the approval stays; the other is served; no crash."""
    inst = make_vault()
    leaver, stayer = credproc(inst, "dev"), credproc(inst, "dev")
    assert wait_for(lambda: len(pending(inst)) == 1)
    kill(leaver)
    (approval,) = pending(inst)
    inst.vaultd("approve", str(approval["id"]), "--code", "123456")
    code, out, err = finish(stayer)
    assert code == 0, err
    assert json.loads(out)["Version"] == 1
    assert inst.daemon is not None and inst.daemon.poll() is None
    assert "Traceback" not in inst.log()
    assert fake_sts.calls("GetSessionToken") == 1


def test_approval_after_every_client_gave_up_fills_only_the_cache(
    make_vault: MakeVault, fake_sts: FakeSts
) -> None:
    """Rows 6 and 13: the sole waiter dies, the late approval is audited and cached only.

    Nothing is written to the dead client; the next client is served without a new prompt.
    """
    inst = make_vault()
    leaver = credproc(inst, "dev")
    assert wait_for(lambda: len(pending(inst)) == 1)
    kill(leaver)
    (approval,) = pending(inst)
    inst.vaultd("approve", str(approval["id"]), "--code", "234567")
    assert wait_for(lambda: fake_sts.calls("GetSessionToken") == 1)
    events = [e["event"] for e in audit_events(inst)]
    assert "approval_granted" in events
    code, out, err = finish(credproc(inst, "dev"), timeout=10)
    assert code == 0, err
    assert b"SecretAccessKey" in out
    assert pending(inst) == []
    assert fake_sts.calls("GetSessionToken") == 1
    assert inst.daemon is not None and inst.daemon.poll() is None
    assert "Traceback" not in inst.log()


def test_crashed_approver_means_the_code_approval_times_out(
    make_vault: MakeVault, fake_sts: FakeSts
) -> None:
    """Row 14 / T2: an approver (TUI) subscribes, then dies; no approval -> timeout, deny.

    Nothing is approved by default, nothing reaches STS and stdout stays empty.
    """
    inst = make_vault(extra={"approval": {"timeout_seconds": 5}})
    tui = raw_connect(inst.socket)
    body = b'{"v":1,"op":"events"}'
    tui.sendall(len(body).to_bytes(4, "big") + body)
    assert read_frame(tui) is not None  # "subscribed"
    client = credproc(inst, "dev")
    announced = read_frame(tui)
    assert announced is not None and b"approval_opened" in announced
    tui.shutdown(socket.SHUT_RDWR)
    tui.close()
    code, out, err = finish(client, timeout=30)
    assert code != 0
    assert out == b""
    assert b"APPROVAL_TIMEOUT" in err
    assert fake_sts.calls() == 0
    assert "approval_failed" in [e["event"] for e in audit_events(inst)]
