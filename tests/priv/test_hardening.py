"""docs/threat-model.md T4: the daemon's memory is not readable by same-uid processes; no core
dumps.

Core dumps are tried for real: with a temporary absolute ``core_pattern`` (root only, restored
afterwards), ``kill -SEGV`` of a control child dumps a core; of a hardened child, none.

ptrace is tried for real between two processes of one non-root uid (root bypasses the
dumpable flag): as root the pair runs under uid 65534 through setpriv; otherwise as the
current user.  A control run without hardening shows the attach would otherwise succeed.
"""

from __future__ import annotations

import os
import shutil
import signal
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
    "from vaultd.system.hardening import harden_process\n"
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
        # vaultd.system.hardening run on the system Python, readable by every uid.
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


CRASHER = r"""
import resource, sys, time
sys.path.insert(0, sys.argv[2])
resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
secret = bytearray(sys.stdin.buffer.readline().strip())  # a canary held in memory
if sys.argv[1] == "1":
    from vaultd.system.hardening import harden_process
    harden_process()
print("ready", flush=True)
time.sleep(60)
"""
CORE_CANARY = b"CoreDumpCanary0000000000000000000000001"
CORE_PATTERN = Path("/proc/sys/kernel/core_pattern")


def _crash(harden: bool) -> int:
    """Start a child holding the canary, ``kill -SEGV`` it; its wait status."""
    proc = subprocess.Popen(
        [sys.executable, "-I", "-c", CRASHER, "1" if harden else "0", str(ROOT)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(CORE_CANARY + b"\n")
    proc.stdin.close()
    assert proc.stdout.readline() == b"ready\n"
    os.kill(proc.pid, signal.SIGSEGV)
    _, status = os.waitpid(proc.pid, 0)
    proc.returncode = -signal.SIGSEGV  # reaped here; keep Popen from waiting again
    proc.stdout.close()
    return status


def _canary_hits(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if CORE_CANARY in p.read_bytes()]


@pytest.mark.priv
def test_segv_of_the_hardened_process_leaves_no_core_file() -> None:
    """docs/threat-model.md T4 and T5 (core dirs): a control child dumps a core holding its canary
    into a temporary ``core_pattern`` directory; the hardened child, killed the same way, leaves
    none."""
    cores = Path(tempfile.mkdtemp(prefix="vaultd-core-"))
    try:
        old = CORE_PATTERN.read_bytes()
        CORE_PATTERN.write_bytes(f"{cores}/core.%p".encode())
    except OSError as exc:
        shutil.rmtree(cores)
        pytest.skip(f"cannot set a temporary core_pattern ({exc.strerror or exc}): needs root")
    try:
        status = _crash(harden=False)
        assert os.WIFSIGNALED(status) and os.WCOREDUMP(status), "control: no core was dumped"
        assert len(list(cores.iterdir())) == 1
        assert len(_canary_hits(cores)) == 1, "control: the scan must find the canary in a core"
        for core in cores.iterdir():
            core.unlink()
        status = _crash(harden=True)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGSEGV
        assert not os.WCOREDUMP(status)
        assert list(cores.iterdir()) == []
        assert _canary_hits(cores) == []
    finally:
        CORE_PATTERN.write_bytes(old)
        shutil.rmtree(cores)
