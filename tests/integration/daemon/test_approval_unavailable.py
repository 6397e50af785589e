"""docs/threat-model.md T2 / F14: a code approval nobody can answer ends in APPROVAL_UNAVAILABLE.

Real `vaultd serve` on a SoftHSM2 token, real credential_process clients, FakeSts counting STS
calls.  With ``approval.out_of_band = false`` (the shipped default) a typed-code approval opens
only when the requesting client has a terminal or a TUI (an ``events`` subscriber, here a raw
socket subscription) is attached; the harness default (``true``) keeps `vaultd approve` working.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import subprocess
import sys
import termios
from collections.abc import Callable

from vaultd.ipc.protocol import HEADER_SIZE
from vaultd.testing.fake_sts import FakeSts
from vaultd.testing.harness import Installation, approve_pending, read_until, wait_for

MakeVault = Callable[..., Installation]
NO_OUT_OF_BAND = {"approval": {"out_of_band": False}}


def credproc(inst: Installation, *, stdin: int = subprocess.DEVNULL) -> subprocess.Popen[bytes]:
    """`vaultd credential-process dev` in a new session; with a pty as ``stdin`` that pty
    becomes its controlling terminal (its /dev/tty), as when a user runs `aws` in a shell."""
    interactive = stdin != subprocess.DEVNULL
    return subprocess.Popen(
        [sys.executable, "-m", "vaultd", "credential-process", "dev"],
        env=inst.env,
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        preexec_fn=(lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0)) if interactive else None,
    )


def finish(proc: subprocess.Popen[bytes]) -> tuple[int, bytes, bytes]:
    """Wait for a client (the bound is a guard against a hang, not a timing check)."""
    out, err = proc.communicate(timeout=40)
    return proc.returncode, out, err


def audit(inst: Installation) -> list[dict[str, object]]:
    lines = (inst.data_dir / "audit.log").read_text().splitlines()
    return [json.loads(line) for line in lines]


def outcomes(inst: Installation, event: str) -> list[object]:
    """The ``outcome`` of each audit record of ``event`` (None when it has none)."""
    return [r.get("outcome") for r in audit(inst) if r["event"] == event]


def count(inst: Installation, event: str) -> int:
    return len(outcomes(inst, event))


def pending(inst: Installation) -> list[dict[str, object]]:
    out: list[dict[str, object]] = json.loads(inst.vaultd("approvals", "--json").stdout)
    return out


class Subscriber:
    """A TUI as the daemon sees it: one ``events`` subscription on a raw socket."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(20)
        self.sock.connect(path)
        body = b'{"v":1,"op":"events"}'
        self.sock.sendall(len(body).to_bytes(HEADER_SIZE, "big") + body)
        assert self.next_event() == "subscribed"

    def _exact(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            assert chunk, "the daemon closed the subscription"
            buf += chunk
        return buf

    def next_event(self) -> str:
        frame = json.loads(self._exact(int.from_bytes(self._exact(HEADER_SIZE), "big")))
        return str(frame["event"])

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


def test_no_terminal_and_no_tui_is_refused_without_an_approval(
    make_vault: MakeVault, fake_sts: FakeSts
) -> None:
    """Row 14: nothing can show the prompt, so no approval opens; nothing reaches STS."""
    inst = make_vault(extra=NO_OUT_OF_BAND)
    code, out, err = finish(credproc(inst))
    assert code != 0
    assert out == b""
    assert b"APPROVAL_UNAVAILABLE" in err and b"vaultd tui" in err
    assert fake_sts.calls() == 0
    assert pending(inst) == []
    assert outcomes(inst, "refused") == ["APPROVAL_UNAVAILABLE"]
    assert count(inst, "approval_opened") == 0
    assert count(inst, "release") == 0


def test_an_attached_tui_gets_the_approval_and_its_leaving_ends_the_next(
    make_vault: MakeVault, fake_sts: FakeSts
) -> None:
    """T2 / row 14: with a TUI attached the approval opens and is answered; once the TUI is
    gone, the approval it alone could answer ends at once for every waiter, never approved."""
    inst = make_vault(extra=NO_OUT_OF_BAND)
    tui = Subscriber(str(inst.socket))
    try:
        first = credproc(inst)
        assert tui.next_event() == "approval_opened"
        approve_pending(inst, "123456", profile="dev")
        assert tui.next_event() == "approval_resolved"
        code, out, err = finish(first)
        assert code == 0, err
        assert json.loads(out)["Version"] == 1
        inst.vaultd("lock")  # drop the cached session: the next request needs a new approval
        waiters = [credproc(inst)]
        assert tui.next_event() == "approval_opened"
        waiters.append(credproc(inst))
        assert wait_for(lambda: count(inst, "request") == 3, timeout=20)  # the second is in
    finally:
        tui.close()
    for proc in waiters:
        code, out, err = finish(proc)
        assert code != 0
        assert out == b""
        assert b"APPROVAL_UNAVAILABLE" in err
    assert fake_sts.calls("GetSessionToken") == 1
    assert pending(inst) == []
    assert count(inst, "approval_opened") == 2
    assert outcomes(inst, "approval_failed") == ["APPROVAL_UNAVAILABLE"]
    assert outcomes(inst, "refused") == ["APPROVAL_UNAVAILABLE"] * 2
    assert count(inst, "release") == 1


def test_a_client_with_a_terminal_is_asked_there(make_vault: MakeVault, fake_sts: FakeSts) -> None:
    """T2: no TUI and out_of_band off, but the client has a /dev/tty: it prompts, and the code
    typed on that terminal approves (not refused as unavailable)."""
    inst = make_vault(extra=NO_OUT_OF_BAND)
    master, slave = os.openpty()
    try:
        client = credproc(inst, stdin=slave)
        shown = read_until(master, b"MFA code")
        assert b"asks for profile dev" in shown, shown
        assert len(pending(inst)) == 1
        os.write(master, b"123456\n")
        code, out, err = finish(client)
    finally:
        os.close(master)
        os.close(slave)
    assert code == 0, err
    assert json.loads(out)["Version"] == 1
    assert [r.token_code for r in fake_sts.requests] == ["123456"]
    assert outcomes(inst, "refused") == []


def test_out_of_band_keeps_vaultd_approve_working(make_vault: MakeVault, fake_sts: FakeSts) -> None:
    """The harness default (``out_of_band = true``): no terminal, no TUI, `vaultd approve`."""
    inst = make_vault()
    client = credproc(inst)
    approve_pending(inst, "123456", profile="dev")
    code, out, err = finish(client)
    assert code == 0, err
    assert json.loads(out)["Version"] == 1
    assert fake_sts.calls("GetSessionToken") == 1
    assert outcomes(inst, "refused") == []
