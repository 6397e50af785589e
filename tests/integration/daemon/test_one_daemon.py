"""docs/threat-model.md T34: one daemon per data dir, two real `vaultd serve` processes."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

import pytest

from vaultd.testing.harness import Installation, wait_for

pytestmark = pytest.mark.hsm
MakeVault = Callable[..., Installation]


def test_a_second_daemon_on_the_same_data_dir_exits_naming_the_first(
    make_vault: MakeVault,
) -> None:
    inst = make_vault()
    assert inst.daemon is not None
    first_pid = inst.daemon.pid
    audit_before = (inst.data_dir / "audit.log").read_bytes()
    other_socket = inst.root / "run2" / "vaultd.sock"
    proc = subprocess.run(
        [sys.executable, "-m", "vaultd", "serve"],
        env={**inst.env, "VAULTD_SOCKET": str(other_socket)},
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode != 0 and proc.stdout == b""
    assert proc.stderr.decode() == (
        f"vaultd: ALREADY_RUNNING: another vaultd (pid {first_pid}) already serves the data dir "
        f"{inst.data_dir}: stop it first, or give this one its own data_dir (one daemon per "
        "data dir keeps the audit log whole)\n"
    )
    assert not other_socket.exists()
    assert (inst.data_dir / "audit.log").read_bytes() == audit_before
    assert inst.vaultd("status").returncode == 0  # the first one still serves

    assert inst.stop_daemon() == 0  # the lock goes with the first daemon
    inst.start_daemon()
    assert wait_for(lambda: inst.socket.exists(), timeout=10)
