"""Approve by touch in the TUI, against a real daemon and the software CTAP2 authenticator
(python-fido2's CtapDevice interface; no USB in CI): the dialog says "touch your security key",
the daemon verifies the touch, generates the code from the sealed seed, and the waiting
credential_process client gets its session — nobody types a code.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from vaultd.tui.app import make_app
from vaultd.tui.approval import TOUCH_HINT, ApprovalDialog

import vaultd.credproc
from vaultd.ipc.client import AsyncDaemonClient
from vaultd.testing.fake_sts import FakeSts
from vaultd.testing.harness import MFA_SERIAL, create_installation
from vaultd.testing.soft_ctap2 import SoftCtap2Device
from vaultd.testing.softhsm import find_softhsm_module

pytestmark = [
    pytest.mark.hsm,
    pytest.mark.skipif(
        find_softhsm_module() is None or shutil.which("softhsm2-util") is None,
        reason="SoftHSM2 is not installed (apt-get install softhsm2)",
    ),
]
SEED = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


async def test_touch_approval_shows_in_the_tui_and_releases_without_a_code(
    tmp_path: Path,
) -> None:
    device = tmp_path / "key.json"
    with FakeSts() as sts:
        inst = create_installation(
            tmp_path / "vault",
            profiles={"dev": {"credentials": "dev", "mfa_serial": MFA_SERIAL, "approval": "touch"}},
            sts_url=sts.url,
            extra={"fido2": {"devices": [f"soft:{device}"]}},
        )
        inst.add_key_pair("dev", "AKIACANARY0000000009", "CanarySecretKey0000000000000000000000009")
        inst.vaultd("mfa", "add-totp", MFA_SERIAL, input=SEED.encode())
        SoftCtap2Device(device).set_touch("auto", 1.5)  # long enough to see the dialog
        inst.vaultd("fido2", "enroll", "--name", "key1")
        inst.start_daemon()
        try:
            app = make_app(inst.socket, AsyncDaemonClient(inst.socket), poll=0.2)
            async with app.run_test(size=(120, 40)) as pilot:
                client = subprocess.Popen(
                    [sys.executable, "-I", "-S", vaultd.credproc.__file__,
                     "--socket", str(inst.socket), "dev"],
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                )  # fmt: skip
                saw_hint = False
                for _ in range(200):
                    await pilot.pause(0.05)
                    screen = app.screen
                    if isinstance(screen, ApprovalDialog):
                        text = " ".join(str(w.render()) for w in screen.query("Static"))
                        saw_hint = saw_hint or TOUCH_HINT in text
                    if client.poll() is not None:
                        break
                out, err = await asyncio.to_thread(client.communicate, timeout=30)
                assert client.returncode == 0, err
                assert saw_hint
                assert json.loads(out)["Version"] == 1
                for _ in range(100):  # the dialog closes once the daemon resolved it
                    await pilot.pause(0.05)
                    if not isinstance(app.screen, ApprovalDialog):
                        break
                assert not isinstance(app.screen, ApprovalDialog)
            assert [r.action for r in sts.requests] == ["GetSessionToken"]
            assert sts.requests[0].token_code is not None
        finally:
            inst.stop_daemon()
