"""`vaultd approve <TAB>` offers the ids of the daemon's pending approvals (real daemon)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable

from vaultd.testing.harness import Installation, approve_pending, wait_for

MakeVault = Callable[..., Installation]


def test_pending_approval_ids_complete_for_approve_and_deny(make_vault: MakeVault) -> None:
    inst = make_vault()

    def complete(*words: str) -> list[str]:
        done = inst.vaultd("__complete", *words)
        assert done.stderr == b""
        return done.stdout.decode().splitlines()

    assert complete("approve", "") == []
    waiting = subprocess.Popen(
        [sys.executable, "-m", "vaultd", "export", "dev"],
        env=inst.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    assert wait_for(lambda: json.loads(inst.vaultd("approvals", "--json").stdout) != [])
    (pending,) = json.loads(inst.vaultd("approvals", "--json").stdout)
    assert complete("approve", "") == [pending["id"]]
    assert complete("deny", pending["id"][:3]) == [pending["id"]]
    assert complete("exec", "") == ["admin", "dev"]
    approve_pending(inst, "123456", profile="dev")
    assert waiting.wait(timeout=60) == 0
