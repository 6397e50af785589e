"""`vaultd approve ID` reports what became of the request it approved (issue 16).

Real `vaultd serve` on a SoftHSM2 token, FakeSts, real clients; `vaultd approve` runs with a
pty as its controlling terminal where a person would type the code, or with stdin piped.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable

from vaultd.testing.fake_sts import FakeSts
from vaultd.testing.harness import (
    Installation,
    approve_pending,
    read_until,
    spawn_in_pty,
    wait_for,
)

from .test_approval_unavailable import credproc, finish, pending

MakeVault = Callable[..., Installation]
Popen = subprocess.Popen[bytes]


def type_at_the_prompt(inst: Installation, keys: bytes) -> tuple[Popen, str, int, bytes, bytes]:
    """A waiting requester, then `vaultd approve ID` whose controlling terminal is a fresh pty,
    where ``keys`` are typed at the code prompt: (requester, id, exit status, stdout, stderr)."""
    requester = credproc(inst)
    approval_id = wait_pending(inst)
    proc, master = spawn_in_pty(
        [sys.executable, "-m", "vaultd", "approve", approval_id], inst.env, capture=True
    )
    try:
        read_until(master, b"MFA code")
        os.write(master, keys)
        out, err = proc.communicate(timeout=60)
    finally:
        os.close(master)
    return requester, approval_id, proc.returncode, out, err


def approve_piped(inst: Installation, approval_id: str, stdin: bytes) -> tuple[int, bytes, bytes]:
    proc = subprocess.run(
        [sys.executable, "-m", "vaultd", "approve", approval_id],
        env=inst.env,
        input=stdin,
        capture_output=True,
        start_new_session=True,  # no controlling terminal
        timeout=60,
        check=False,
    )
    return proc.returncode, proc.stdout, proc.stderr


def wait_pending(inst: Installation) -> str:
    assert wait_for(lambda: len(pending(inst)) == 1)
    return str(pending(inst)[0]["id"])


def test_a_code_typed_at_the_prompt_reports_credentials_issued(
    make_vault: MakeVault, fake_sts: FakeSts
) -> None:
    inst = make_vault()
    requester, approval_id, rc, out, err = type_at_the_prompt(inst, b"123456\n")
    assert rc == 0, err
    assert out == f"approved {approval_id}: credentials issued for profile dev\n".encode()
    device = b" (MFA device arn:aws:iam::123456789012:mfa/alice)"
    assert err.startswith(f"approval {approval_id}: profile dev".encode() + device + b" for pid ")
    assert finish(requester)[0] == 0
    assert fake_sts.calls("GetSessionToken") == 1


def test_a_reused_code_is_reported_as_the_failure_it_is(
    make_vault: MakeVault, fake_sts: FakeSts
) -> None:
    inst = make_vault()
    first = credproc(inst)
    rc, out, err = approve_piped(inst, wait_pending(inst), b"112233\n")
    assert (rc, err) == (0, b"") and out.endswith(b"credentials issued for profile dev\n")
    assert finish(first)[0] == 0
    inst.vaultd("lock")
    second = credproc(inst)
    approval_id = wait_pending(inst)
    rc, out, err = approve_piped(inst, approval_id, b"112233\n")
    assert rc != 0 and out == b""
    assert (
        err
        == (
            f"vaultd: CODE_REUSED: approval {approval_id} was accepted, but the request for "
            "profile dev then failed (CODE_REUSED): wait for the next code\n"
        ).encode()
    )
    code, _out, requester_err = finish(second)
    assert code != 0 and b"CODE_REUSED" in requester_err
    assert fake_sts.calls("GetSessionToken") == 1


def test_ctrl_c_at_the_prompt_denies_the_approval(make_vault: MakeVault, fake_sts: FakeSts) -> None:
    inst = make_vault()
    requester, approval_id, rc, out, err = type_at_the_prompt(inst, b"\x03")
    assert rc == 130
    assert (out, err.splitlines()[-1]) == (
        b"",
        f"vaultd: interrupted: denied {approval_id}".encode(),
    )
    code, _out, requester_err = finish(requester)
    assert code != 0 and b"DENIED" in requester_err
    assert pending(inst) == []
    assert fake_sts.calls() == 0


def test_no_terminal_and_no_code_is_one_line_and_leaves_it_pending(
    make_vault: MakeVault, fake_sts: FakeSts
) -> None:
    inst = make_vault()
    requester = credproc(inst)
    approval_id = wait_pending(inst)
    rc, out, err = approve_piped(inst, approval_id, b"")
    assert rc != 0 and out == b""
    assert err.startswith(b"vaultd: CODE_MALFORMED: no MFA code on stdin; approval ")
    assert err.count(b"\n") == 1 and b"Warning" not in err
    assert [a["id"] for a in pending(inst)] == [approval_id]
    approve_pending(inst, "654321", profile="dev")
    assert finish(requester)[0] == 0


def test_an_unknown_id_is_refused_before_any_code_is_read(make_vault: MakeVault) -> None:
    inst = make_vault()
    rc, out, err = approve_piped(inst, "nosuchapproval", b"123456\n")
    assert rc != 0 and out == b""
    assert err.startswith(b"vaultd: APPROVAL_NOT_FOUND: no pending approval 'nosuchapproval'")
    assert err.count(b"\n") == 1
