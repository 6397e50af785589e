"""THREATS T4: the daemon's memory is not readable by same-uid processes; no core dumps.

ptrace is tried for real between two processes of one non-root uid (root bypasses the
dumpable flag): as root the pair runs under uid 65534 through setpriv; otherwise as the
current user.  A control run without hardening shows the attach would otherwise succeed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

ATTACHER = r"""
import ctypes, os, subprocess, sys, time
harden = sys.argv[1] == "1"
child_code = (
    "import sys, time\n"
    "sys.path.insert(0, %r)\n"
    "from vaultd.hardening import harden_process\n"
    "if %r: harden_process()\n"
    "print('ready', flush=True)\n"
    "time.sleep(30)\n"
) % (sys.argv[2], harden)
child = subprocess.Popen([sys.executable, "-c", child_code], stdout=subprocess.PIPE)
child.stdout.readline()
libc = ctypes.CDLL(None, use_errno=True)
PTRACE_ATTACH, PTRACE_DETACH = 16, 17
rc = libc.ptrace(PTRACE_ATTACH, child.pid, None, None)
err = ctypes.get_errno()
if rc == 0:
    os.waitpid(child.pid, 0)
    libc.ptrace(PTRACE_DETACH, child.pid, None, None)
with open(f"/proc/{child.pid}/limits") as fh:
    core = [line for line in fh if line.startswith("Max core file size")][0].split()
try:
    open(f"/proc/{child.pid}/mem", "rb").close()
    mem = "readable"
except OSError:
    mem = "refused"
child.kill()
print(rc, err, core[4], core[5], mem)
"""


def _run(harden: bool, tmp_path: Path) -> tuple[int, int, str, str, str]:
    # pytest's tmp_path root is private to root; the other uid needs to read the script.
    shared = Path(tempfile.mkdtemp(prefix="vaultd-ptrace-"))
    os.chmod(shared, 0o755)
    script = shared / "attach.py"
    script.write_text(ATTACHER)
    os.chmod(script, 0o644)
    python = sys.executable
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("setpriv is needed to drop to another uid")
        # The venv's interpreter may live under /root (0700); the stdlib-only attacher and
        # vaultd.hardening run on the system Python, readable by every uid.
        python = shutil.which("python3", path="/usr/bin:/usr/local/bin") or sys.executable
    cmd = [python, "-I", str(script), "1" if harden else "0", str(ROOT)]
    if os.geteuid() == 0:
        cmd = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", *cmd]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True)
    finally:
        shutil.rmtree(shared)
    rc, err, soft, hard, mem = done.stdout.split()
    return int(rc), int(err), soft, hard, mem


@pytest.mark.priv
def test_hardened_process_refuses_ptrace_and_has_no_core_limit(tmp_path: Path) -> None:
    control = _run(False, tmp_path)
    assert control[0] == 0, "control: attaching to an unhardened child should work"
    rc, err, soft, hard, mem = _run(True, tmp_path)
    assert rc == -1
    assert err == 1  # EPERM
    assert (soft, hard) == ("0", "0")
    assert mem == "refused"
