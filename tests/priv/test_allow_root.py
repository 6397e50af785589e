"""docs/threat-model.md F8: a root peer is refused by default and, with ``ipc.allow_root``, served
and audited.

The suite runs as root, so the real daemon (`vaultd serve`: SoftHSM2 token, real socket) runs
here as uid 65534 through setpriv, and the test process is the root peer.  The daemon gets the
ambient capability CAP_DAC_READ_SEARCH only so that it can read the interpreter and libraries
under /root (0700); it changes no uid check, and everything it writes is chowned to it.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from vaultd.ipc.client import DaemonClient
from vaultd.ipc.protocol import encode_request
from vaultd.testing.harness import Installation, create_installation
from vaultd.testing.softhsm import find_softhsm_module

pytestmark = [pytest.mark.priv, pytest.mark.hsm]
NOBODY = 65534


@pytest.fixture
def inst() -> Iterator[Installation]:
    """An installation owned by uid 65534 (the caller must be root)."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run the daemon as another uid")
    if find_softhsm_module() is None:
        pytest.skip("SoftHSM2 is not installed (apt-get install softhsm2)")
    base = Path(tempfile.mkdtemp(prefix="vaultd-root-peer-"))
    os.chmod(base, 0o755)
    installation = create_installation(base / "vault")
    try:
        yield installation
    finally:
        _stop(installation)
        shutil.rmtree(base)


def _chown_all(root: Path) -> None:
    for path in [root, *root.rglob("*")]:
        os.chown(path, NOBODY, NOBODY, follow_symlinks=False)


def _start_as_nobody(inst: Installation, *, allow_root: bool) -> None:
    inst.config["ipc"] = {"allow_root": allow_root}
    inst.write_config()
    _chown_all(inst.root)
    seen = len(inst.log())
    log = open(inst.root / "daemon.log", "ab")
    inst.daemon = subprocess.Popen(
        [
            "setpriv", "--reuid", str(NOBODY), "--regid", str(NOBODY), "--clear-groups",
            "--inh-caps", "+dac_read_search", "--ambient-caps", "+dac_read_search",
            sys.executable, "-m", "vaultd", "serve",
        ],
        env=inst.env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    log.close()
    deadline = time.monotonic() + 20
    while "serving on" not in inst.log()[seen:]:
        assert inst.daemon.poll() is None, inst.log()
        assert time.monotonic() < deadline, inst.log()
        time.sleep(0.05)


def _stop(inst: Installation) -> None:
    if inst.daemon is not None and inst.daemon.poll() is None:
        inst.daemon.terminate()
        inst.daemon.wait(15)
    inst.daemon = None


def _audit(inst: Installation, event: str) -> list[dict[str, object]]:
    path = inst.data_dir / "audit.log"
    lines = path.read_text().splitlines() if path.exists() else []
    return [r for r in map(json.loads, lines) if r.get("event") == event]


def _wait_audit(inst: Installation, event: str) -> list[dict[str, object]]:
    deadline = time.monotonic() + 10
    while not (found := _audit(inst, event)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


def test_root_peer_is_refused_by_default_and_served_and_audited_when_allowed(
    inst: Installation,
) -> None:
    _start_as_nobody(inst, allow_root=False)
    assert inst.daemon is not None
    assert os.stat(inst.socket).st_uid == NOBODY
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(inst.socket))
        received = b""
        try:  # the daemon may close before the request is even sent
            sock.sendall(encode_request("status"))
            while chunk := sock.recv(4096):
                received += chunk
        except (BrokenPipeError, ConnectionResetError):
            pass
    assert received == b""
    (refused,) = _wait_audit(inst, "peer_refused")
    assert refused["client"] == {"pid": os.getpid(), "uid": 0}
    assert _audit(inst, "root_peer_admitted") == []
    _stop(inst)

    _start_as_nobody(inst, allow_root=True)
    # The test process trusts this daemon of another uid explicitly (clients refuse others).
    status = DaemonClient(inst.socket, timeout=20, daemon_uids=(NOBODY,)).request("status")
    assert status["pid"] == inst.daemon.pid  # type: ignore[union-attr]
    (admitted,) = _wait_audit(inst, "root_peer_admitted")
    assert admitted["client"] == {"pid": os.getpid(), "uid": 0}
    assert admitted["op"] == "status"
    assert len(_audit(inst, "peer_refused")) == 1  # only the refusal of the first run
