"""docs/threat-model.md T29: another user squats the ``/tmp/vaultd-<uid>`` fallback.

A squatter run as uid 65534 makes ``/tmp/vaultd-0/`` 0777 first and listens there with a 0777
socket.  Every client (``credential-process``, ``unlock``, ``approve``, ``break-glass`` and the
TUI's client), run with no ``XDG_RUNTIME_DIR`` and no ``VAULTD_SOCKET``, must refuse it with
``UNSAFE_SOCKET`` before sending a byte: the squatter logs nothing.  The scenario runs in a
private mount namespace with a tmpfs on /tmp (squat_driver.py), so the machine's /tmp is not
touched.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.priv
DRIVER = Path(__file__).with_name("squat_driver.py")


def test_a_squatted_tmp_fallback_gets_no_byte_from_any_client() -> None:
    if os.geteuid() != 0 or not all(shutil.which(t) for t in ("setpriv", "unshare")):
        pytest.skip("needs root, setpriv and unshare (a private /tmp for the squatter)")
    if any(Path(p).is_relative_to("/tmp") for p in (sys.executable, DRIVER)):
        pytest.skip("the scenario mounts a tmpfs on /tmp, which would hide this checkout there")
    if not Path("/usr/bin/python3").exists():
        pytest.skip("the squatter runs /usr/bin/python3 (readable by uid 65534)")
    proc = subprocess.run(
        ["unshare", "--mount", sys.executable, str(DRIVER)],
        capture_output=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    result = json.loads(proc.stdout)
    assert result["received"] == ""
    assert set(result["clients"]) == {
        "credential-process",
        "unlock",
        "approve",
        "break-glass",
        "tui",
    }
    for name, (status, out, err) in result["clients"].items():
        assert status != 0, name
        assert out == "", name
        assert err.splitlines()[-1].startswith("vaultd: UNSAFE_SOCKET: refusing "), (name, err)
        assert "UNSAFE_SOCKET" in err, (name, err)
        assert "/tmp/vaultd-0/vaultd.sock" in err and "uid 65534" in err, (name, err)
