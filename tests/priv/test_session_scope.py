"""docs/threat-model.md T33: an approval's scope is the requester's kernel session, and a
requester whose session leader is out of sight (getsid() is 0 in a pid namespace whose leader
lives outside it, as in CI containers) gets a scope of its own that no other process shares.

Both run in a real new pid namespace (``unshare --pid --fork --mount-proc``), which needs root.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

pytestmark = pytest.mark.priv

PROBE = r"""
import json, os, subprocess, sys
from vaultd.system.procinfo import PeerProcess

def scope(**popen):
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                             stdin=subprocess.PIPE, **popen)
    peer = PeerProcess(child.pid, uid=os.getuid())
    try:
        return {"pid": child.pid, "sid": os.getsid(child.pid), "scope": peer.scope}
    finally:
        child.stdin.close(); child.wait(); peer.close()

print(json.dumps([scope(), scope(), scope(start_new_session=True)]))
"""


def test_a_requester_whose_session_is_out_of_sight_has_a_scope_of_its_own() -> None:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare for a new pid namespace")
    run = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c", PROBE],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if run.returncode != 0 and run.stderr.startswith("unshare:"):  # not the probe's failure
        pytest.skip(f"no new pid namespace here: {run.stderr.strip()}")
    assert run.returncode == 0, run.stderr
    hidden, other, own = json.loads(run.stdout)
    assert hidden["sid"] == 0 and other["sid"] == 0  # the leader is outside the namespace
    assert hidden["scope"].startswith(f"process:{hidden['pid']}:")
    assert other["scope"].startswith(f"process:{other['pid']}:")
    assert hidden["scope"] != other["scope"]  # two such processes never share an approval
    assert own["sid"] == own["pid"] and own["scope"] == f"session:{own['pid']}"
