"""One owner for the token and the store: a CLI writer waiting for a FIDO2 touch never holds the
store lock, so the daemon keeps serving (issue 12).

Real SoftHSM2 token, real `vaultd serve`, a software authenticator that takes 30 s to be
touched, 50 real credential_process clients.  Before the fix `vaultd add --bind-fido2` held the
store's file lock across the touch, the daemon's token call waited on it past
``pkcs11.call_timeout`` and the daemon sealed itself.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from vaultd.testing.fake_sts import FakeSts
from vaultd.testing.harness import Installation, approve_pending
from vaultd.testing.soft_ctap2 import SoftCtap2Device

from .test_daemon_credentials import credproc, finish

MakeVault = Callable[..., Installation]
TOUCH_SECONDS = 30.0
REQUESTS = 50
ADD = ("add", "bound", "--bind-fido2", "--allow-single-authenticator")
BOUND = b'{"AccessKeyId": "AKIACANARY0000000003", "SecretAccessKey": "CanarySecretKey3"}'


def test_a_bound_add_waiting_for_a_touch_does_not_stop_the_daemon_serving(
    make_vault: MakeVault, fake_sts: FakeSts, tmp_path: Path
) -> None:
    device = tmp_path / "key1.json"
    inst = make_vault(extra={"fido2": {"devices": [f"soft:{device}"]}}, start=False)
    SoftCtap2Device(device).set_touch("auto", 0.05)
    inst.vaultd("fido2", "enroll", "--name", "key1")
    inst.start_daemon()
    SoftCtap2Device(device).set_touch("auto", TOUCH_SECONDS)  # the person is slow to touch

    add = subprocess.Popen(
        [sys.executable, "-m", "vaultd", *ADD],
        env=inst.env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    assert add.stdin is not None and add.stderr is not None
    add.stdin.write(BOUND)
    add.stdin.close()
    add.stdin = None  # written and closed: communicate() below only reads
    seen = b""
    while b"touch authenticator" not in seen and add.poll() is None:
        seen += add.stderr.readline()  # the prompt comes once the authenticator waits
    assert b"touch authenticator 'key1'" in seen, seen

    clients = [credproc(inst, "dev") for _ in range(REQUESTS)]
    approve_pending(inst, "123456", profile="dev")
    results = [finish(proc) for proc in clients]

    assert [code for code, _, _ in results] == [0] * REQUESTS, results[0][2]
    assert len({out for _, out, _ in results}) == 1  # one session, served to all 50
    assert fake_sts.calls("GetSessionToken") == 1
    status = json.loads(inst.vaultd("status", "--json").stdout)
    assert status["sealed"] is False
    assert "sealing" not in inst.log()

    out, err = add.communicate(timeout=TOUCH_SECONDS + 60)
    assert add.returncode == 0, err
    assert b"bound to FIDO2" in out
    listed = json.loads(inst.vaultd("list", "--json").stdout)
    assert {r["name"] for r in listed} >= {"dev", "bound"}
