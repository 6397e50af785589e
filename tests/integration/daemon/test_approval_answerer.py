"""Approval records say who answered (issue 13): uid, pid and executable of the answering
process, and the channel the daemon derives from the connection (never from a request field):
the requester's own terminal prompt, a TUI (a process holding an ``events`` subscription), or
`vaultd approve` / `vaultd deny` from elsewhere.

Real `vaultd serve` on a SoftHSM2 token, real credential_process clients, FakeSts.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from vaultd.ipc.client import DaemonClient
from vaultd.testing.harness import Installation, approve_pending, wait_for

from .test_approval_unavailable import (
    NO_OUT_OF_BAND,
    Subscriber,
    audit,
    credproc,
    finish,
    pending,
    read_until,
)

MakeVault = Callable[..., Installation]


def answered(inst: Installation, event: str = "approval_answered") -> list[dict[str, object]]:
    """The ``by`` of each audit record of ``event``."""
    found = [r["by"] for r in audit(inst) if r["event"] == event]
    assert all(isinstance(by, dict) for by in found)
    return found  # type: ignore[return-value]


def test_vaultd_approve_is_recorded_as_such(make_vault: MakeVault) -> None:
    inst = make_vault()
    client = credproc(inst)
    approve_pending(inst, "123456", profile="dev")
    assert finish(client)[0] == 0
    (by,) = answered(inst)
    assert by["channel"] == "vaultd_approve" and by["uid"] == os.getuid()
    assert by["pid"] not in (client.pid, os.getpid())
    assert os.path.realpath(str(by["executable"])) == os.path.realpath(sys.executable)


def test_vaultd_deny_is_recorded_with_who_denied(make_vault: MakeVault) -> None:
    inst = make_vault()
    client = credproc(inst)
    assert wait_for(lambda: len(pending(inst)) == 1)
    inst.vaultd("deny", str(pending(inst)[0]["id"]))
    assert finish(client)[0] != 0
    (by,) = answered(inst, "approval_denied")
    assert by["channel"] == "vaultd_approve" and by["uid"] == os.getuid()


def test_the_requesters_terminal_prompt_is_recorded_as_such(make_vault: MakeVault) -> None:
    inst = make_vault(extra=NO_OUT_OF_BAND)
    master, slave = os.openpty()
    try:
        client = credproc(inst, stdin=slave)
        read_until(master, b"MFA code")
        os.write(master, b"123456\n")
        assert finish(client)[0] == 0
    finally:
        os.close(master)
        os.close(slave)
    (by,) = answered(inst)
    assert (by["channel"], by["pid"]) == ("terminal_prompt", client.pid)


def test_an_attached_tui_is_recorded_as_such(make_vault: MakeVault) -> None:
    """This test process is the TUI: it holds the subscription and sends the approve."""
    inst = make_vault(extra=NO_OUT_OF_BAND)
    tui = Subscriber(str(inst.socket))
    try:
        client = credproc(inst)
        assert tui.next_event() == "approval_opened"
        approval_id = pending(inst)[0]["id"]
        DaemonClient(inst.socket).request("approve", id=approval_id, code="123456")
        assert finish(client)[0] == 0
    finally:
        tui.close()
    (by,) = answered(inst)
    assert (by["channel"], by["pid"]) == ("tui", os.getpid())
