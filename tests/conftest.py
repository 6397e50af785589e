"""Settings for the whole test process."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import settings

PCSC_DIR_ENV = "VAULTD_TEST_PCSC_DIR"

# No test passes or fails on wall time: Hypothesis's per-example deadline (200 ms) would, on a
# loaded two-worker run.
settings.register_profile("vaultd", deadline=None)
settings.load_profile("vaultd")


def pytest_configure(config: pytest.Config) -> None:
    """Point every PC/SC client of this process at the one private pcscd the PIV tests start.

    libpcsclite (pyscard, ykcs11, OpenSC) reads ``PCSCLITE_CSOCK_NAME`` once per process, on its
    first use: a test that touches PC/SC before the PIV tests run would otherwise fix the
    system's socket for the rest of the run (see ``vaultd/testing/pcsc.py``).
    """
    # An xdist worker inherits the controller's directory: each worker runs its own pcscd.
    inherited = None if os.environ.get("PYTEST_XDIST_WORKER") else os.environ.get(PCSC_DIR_ENV)
    base = Path(inherited or tempfile.mkdtemp(prefix="vaultd-pcsc-"))
    os.environ[PCSC_DIR_ENV] = str(base)
    os.environ["PCSCLITE_CSOCK_NAME"] = str(base / "run" / "pcscd" / "pcscd.comm")
