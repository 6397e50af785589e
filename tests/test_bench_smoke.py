"""Each benchmark script runs end to end in its ``--quick`` mode.

Real peers: SoftHSM2, a real `vaultd serve`, FakeSts on 127.0.0.1.  Timings are printed by the
scripts and never asserted here; only that each run completes and reports what it measured.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vaultd.testing.softhsm import find_softhsm_module

BENCH = Path(__file__).resolve().parent.parent / "bench"

pytestmark = pytest.mark.hsm


@pytest.fixture(autouse=True)
def _softhsm() -> None:
    if find_softhsm_module() is None or shutil.which("softhsm2-util") is None:
        pytest.skip("SoftHSM2 is not installed (apt-get install softhsm2)")


def run_quick(script: str) -> str:
    proc = subprocess.run(
        [sys.executable, str(BENCH / script), "--quick"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    assert lines[-1].startswith("summary: "), proc.stdout
    return proc.stdout


def test_client_latency_checks_every_output() -> None:
    out = run_quick("client_latency.py")
    assert "(a) python3 -I -S credproc.py" in out
    assert "every client output matched the cached JSON" in out


def test_burst_counts_one_sts_call_and_one_approval() -> None:
    out = run_quick("burst.py")
    assert "with 1 STS call(s) and 1 approval(s)" in out
    row = out.split("(b) cold burst")[1].splitlines()[4].split()
    # approval -> all answered, exit 0, distinct outputs, STS calls, approvals
    assert row[2:] == ["5", "1", "1", "1"]


def test_hsm_ops_compares_all_variants() -> None:
    out = run_quick("hsm_ops.py")
    for variant in ("envelope", "adapter", "raw", "software"):
        assert f"\n{variant} " in out


def test_daemon_startup_reports_ready_time_and_memory() -> None:
    out = run_quick("daemon_startup.py")
    assert "summary: ready in " in out
    assert "peak RSS " in out


def test_scheme_open_compares_the_sealing_schemes() -> None:
    out = run_quick("scheme_open.py")
    for variant in ("token AEAD", "token ECDH", "ECDH seal", "RSA-OAEP seal"):
        assert f"\n{variant} " in out
    assert "summary: a token ECDH open takes " in out


def test_recipients_open_compares_one_and_two_recipients() -> None:
    out = run_quick("recipients_open.py")
    for scheme in ("token AEAD", "token ECDH"):
        for variant in ("1 key", "set of 1", "set of 2", "set of 2, recovery"):
            assert f"\n{scheme}, {variant} " in out
        assert f"summary: {scheme}: an open with 2 recipients takes " in out
