"""`vaultd demo --yubikey`: the demo on the emulated YubiKey through ykcs11, touches included."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.sts
def test_demo_runs_on_the_emulated_yubikey(pcsc_dir: Path) -> None:
    """``pcsc_dir`` only skips where the PIV stack is missing; the demo starts its own."""
    done = subprocess.run(
        [sys.executable, "-m", "vaultd", "demo", "--yubikey"],
        capture_output=True,
        timeout=300,  # a guard against a hang, not a timing check
        check=False,
    )
    out = done.stdout.decode()
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert "through Yubico's ykcs11 (token ECDH" in out
    assert ":assumed-role/Admin/vaultd-admin" in out
    assert "OK: " in out and "chain intact" in out
    touched = re.search(r"the emulated YubiKey was touched (\d+) time", out)
    # One at init (its trial ECDH); the dev request opens alice's keys, the FIDO2 credential it
    # checks and the TOTP seed it makes the code from; admin is chained from dev's session and
    # the writes (add, add-totp, enroll, signCount) open no record.
    assert touched and int(touched.group(1)) == 4
