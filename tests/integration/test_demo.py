"""`vaultd demo` (what `./dev demo` runs) passes end to end and prints the caller identity."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from vaultd.testing.softhsm import find_softhsm_module


@pytest.mark.hsm
@pytest.mark.sts
def test_demo_runs_end_to_end() -> None:
    if find_softhsm_module() is None or shutil.which("softhsm2-util") is None:
        pytest.skip("SoftHSM2 is not installed")
    done = subprocess.run(
        [sys.executable, "-m", "vaultd", "demo"], capture_output=True, timeout=300, check=False
    )
    out = done.stdout.decode()
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert ":assumed-role/Admin/vaultd-admin" in out
    assert "'TokenCode': '" in out
    assert "OK: " in out and "chain intact" in out
    assert "/tmp/vaultd-demo-" not in out.split("==> Done")[-1]  # cleaned up, not kept
    assert "CRITICAL" not in out + done.stderr.decode()
    assert "note: SoftHSM2 token" in out  # the software token is still named as such
