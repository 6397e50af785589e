"""A process that joins a waiting approval is shown to the approver (issue 13 Medium 6,
docs/threat-model.md T31).

The attack: while the user answers process A's prompt for profile dev, process B (same uid,
same approval scope) asks for dev too, joins A's single-flight and gets the same session.
Before, nothing showed B.  Now `vaultd approvals` lists it under A's approval, A's terminal
prompt prints it, a TUI (an ``events`` subscriber) gets ``approval_joined``, and the audit log
has an ``approval_joined`` record naming it.

Real `vaultd serve` on a SoftHSM2 token, real credential_process clients, FakeSts.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable

from vaultd.testing.fake_sts import FakeSts
from vaultd.testing.harness import Installation, read_until, wait_for

from .test_approval_unavailable import Subscriber, audit, credproc, finish, pending

MakeVault = Callable[..., Installation]


def joined_pids(inst: Installation) -> list[object]:
    return [j["pid"] for a in pending(inst) for j in a["joined"]]  # type: ignore[attr-defined]


def test_a_joining_process_is_listed_shown_audited_and_served(
    make_vault: MakeVault, fake_sts: FakeSts
) -> None:
    inst = make_vault(extra={"approval": {"scope": "user"}})
    tui = Subscriber(str(inst.socket))
    master, slave = os.openpty()
    try:
        first = credproc(inst, stdin=slave)
        read_until(master, b"MFA code")
        assert tui.next_event() == "approval_opened"
        joiner = credproc(inst)  # no terminal, another kernel session: same scope ("user")
        assert wait_for(lambda: joined_pids(inst) == [joiner.pid])
        assert tui.next_event() == "approval_joined"
        shown = read_until(master, f"also waiting: pid {joiner.pid}".encode())
        assert b"vaultd" in shown or b"python" in shown, shown  # its executable is named
        listing = inst.vaultd("approvals").stdout.decode()
        assert f"also waiting: pid {joiner.pid}" in listing, listing
        os.write(master, b"123456\n")
        results = [finish(first), finish(joiner)]
    finally:
        tui.close()
        os.close(master)
        os.close(slave)
    assert [code for code, _, _ in results] == [0, 0], results
    assert json.loads(results[0][1]) == json.loads(results[1][1])
    assert [r.token_code for r in fake_sts.requests] == ["123456"]
    records = [r for r in audit(inst) if r["event"] == "approval_joined"]
    assert [r["client"]["pid"] for r in records] == [joiner.pid]  # type: ignore[index]
    assert f"for profile dev joined by pid {joiner.pid}" in inst.log()


def test_under_session_scope_another_session_opens_its_own_approval(
    make_vault: MakeVault, fake_sts: FakeSts
) -> None:
    """The shipped scope: a process of another login session never joins A's approval; it
    queues behind it (one ceremony per MFA device) and is asked on its own."""
    inst = make_vault(extra={"approval": {"scope": "session"}})
    a, b = credproc(inst), credproc(inst)  # each in a new kernel session
    for _ in (a, b):
        assert wait_for(lambda: len(pending(inst)) == 1)
        assert joined_pids(inst) == []
        inst.vaultd("deny", str(pending(inst)[0]["id"]))
    assert finish(a)[0] != 0 and finish(b)[0] != 0
    assert fake_sts.requests == []
    assert not [r for r in audit(inst) if r["event"] == "approval_joined"]
