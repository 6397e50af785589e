"""Approval scopes (issue 13 Medium 6, docs/threat-model.md T31): with approval.scope =
"session" an approval releases a profile's session only to processes of the approved login
session (the kernel session id); a process in another session (`setsid`) is asked again.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

import vaultd.credproc
from vaultd.ipc.client import DaemonClient
from vaultd.testing.fake_sts import FakeSts
from vaultd.testing.harness import Installation, approve_pending

CREDPROC = Path(vaultd.credproc.__file__)
MakeVault = Callable[..., Installation]


def in_new_session(inst: Installation, profile: str) -> subprocess.Popen[bytes]:
    """A real credential_process client under setsid: a new kernel session, no terminal."""
    return subprocess.Popen(
        ["setsid", "-w", sys.executable, "-I", "-S", str(CREDPROC), "--socket",
         str(inst.socket), profile],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def from_this_session(inst: Installation, profile: str, code: str) -> dict[str, object]:
    """Credentials for this test process (its own session), approving with ``code``."""
    result: dict[str, object] = {}
    thread = threading.Thread(
        target=lambda: result.update(
            DaemonClient(inst.socket).request("credentials", profile=profile)
        )
    )
    thread.start()
    approve_pending(inst, code, profile=profile)
    thread.join(30)
    return result


def pending(inst: Installation) -> bool:
    return inst.vaultd("approvals", "--json").stdout.strip() not in (b"", b"[]")


@pytest.mark.parametrize("profile", ["dev", "admin"])
def test_another_session_is_asked_and_the_approved_one_is_served(
    make_vault: MakeVault, fake_sts: FakeSts, profile: str
) -> None:
    inst = make_vault(extra={"approval": {"scope": "session"}})
    first = from_this_session(inst, profile, "123456")
    assert isinstance(first["output"], dict)
    again = DaemonClient(inst.socket).request("credentials", profile=profile)  # no approval
    assert again["output"] == first["output"]
    calls = fake_sts.calls()
    proc = in_new_session(inst, profile)
    approve_pending(inst, "654321", profile=profile)  # the other session gets a prompt
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert fake_sts.calls() > calls  # released only after its own MFA


def test_user_scope_keeps_serving_any_session_from_the_cache(
    make_vault: MakeVault, fake_sts: FakeSts
) -> None:
    inst = make_vault(extra={"approval": {"scope": "user"}})
    first = from_this_session(inst, "dev", "123456")
    proc = in_new_session(inst, "dev")
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert json.loads(out) == first["output"]
    assert fake_sts.calls() == 1 and not pending(inst)
