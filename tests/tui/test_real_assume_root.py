"""The real `vaultd tui` in tmux, driven as a person would, through break-glass with AssumeRoot
against a real daemon (SoftHSM2 token, software CTAP2 authenticator with a PIN for UV) and
FakeSts, which validates AssumeRoot as AWS documents it (issue 15)."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fido2.ctap2 import Ctap2
from fido2.ctap2.pin import ClientPin

from vaultd.testing.fake_sts import FakeSts
from vaultd.testing.harness import Installation, create_installation
from vaultd.testing.soft_ctap2 import SoftCtap2Device
from vaultd.testing.tmux import TmuxServer

from .test_real_daemon import tui_command, tui_tmux

ADMIN_SERIAL = "arn:aws:iam::123456789012:mfa/org-admin"
PIN = "4321"
CODE = "271828"
DELETE = "arn:aws:iam::aws:policy/root-task/IAMDeleteRootUserCredentials"

pytestmark = [
    pytest.mark.hsm,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
]


@pytest.fixture
def org(tmp_path: Path) -> Iterator[tuple[Installation, FakeSts]]:
    device = tmp_path / "key.json"
    with FakeSts() as sts:
        inst = create_installation(
            tmp_path / "vault",
            sts_url=sts.url,
            profiles={
                "org-admin": {"credentials": "org-admin", "mfa_serial": ADMIN_SERIAL},
                "member-root": {
                    "source_profile": "org-admin",
                    "assume_root_account": "111122223333",
                    "assume_root_task": "IAMAuditRootUserCredentials",
                },
            },
            extra={"fido2": {"devices": [f"soft:{device}"]}},
        )
        SoftCtap2Device(device).set_touch("auto", 0.05)
        inst.vaultd("fido2", "enroll", "--name", "key")
        ClientPin(Ctap2(SoftCtap2Device(device))).set_pin(PIN)
        inst.add_key_pair("org-admin", "AKIAORGADMIN00000009", "OrgAdminSecret" + "0" * 26)
        inst.start_daemon()
        try:
            yield inst, sts
        finally:
            inst.stop_daemon()


@pytest.fixture
def tmux(org: tuple[Installation, FakeSts]) -> Iterator[TmuxServer]:
    with tui_tmux(org[0].env) as server:
        yield server


def keys(tmux: TmuxServer, *names: str) -> None:
    tmux.run("send-keys", "-t", "tui", *names)


def moved(tmux: TmuxServer, *names: str) -> None:
    """Keys that move the focus; then a pause before typing, as a person makes (text typed
    at once after Tab can land in the previous field: issue 16).  Not a timing check."""
    keys(tmux, *names)
    time.sleep(0.5)


def typed(tmux: TmuxServer, text: str, shown: str) -> None:
    """Type ``text`` one key at a time, then wait until ``shown`` is on screen."""
    for char in text:
        tmux.run("send-keys", "-t", "tui", "-l", char)
    tmux.wait_for(shown)


def test_assume_root_through_the_tui_in_tmux(
    org: tuple[Installation, FakeSts], tmux: TmuxServer
) -> None:
    _, sts = org
    tmux.run("new-session", "-d", "-s", "tui", "-x", "140", "-y", "45", *tui_command())
    tmux.wait_for("connected")
    keys(tmux, "b")
    tmux.wait_for("break-glass root access")
    keys(tmux, "Enter")  # the profile picker has the focus: open it
    tmux.wait_for("member-root")
    moved(tmux, "Down", "Enter")
    listed = "IAMAuditRootUserCredentials"  # the default task (its text wraps with the width)
    tmux.wait_for("111122223333 (member-root)", listed)
    moved(tmux, "Tab")  # the reason
    typed(tmux, "delete leaked root key", "delete leaked root key")
    moved(tmux, "Tab")  # the account (kept)
    moved(tmux, "Tab")  # the task
    keys(tmux, "Enter")
    # Option labels wrap with the menu's width: wait on the task names and the menu's footer.
    tmux.wait_for("IAMDeleteRootUserCredentials", "esc Dismiss menu")
    moved(tmux, "Down", "Down", "Enter")
    tmux.wait_for("IAMDeleteRootUserCredentials", absent=("esc Dismiss menu", "IAMAuditRoot"))
    moved(tmux, "Tab")  # the PIN
    typed(tmux, PIN, "••••")
    moved(tmux, "Enter")  # on to the code
    typed(tmux, CODE, CODE)
    keys(tmux, "Enter")
    shown = "SHOWN ONCE: copy these root credentials"
    tmux.wait_for("export AWS_ACCESS_KEY_ID=ASIA", shown, wait=40)
    fresh, root = sts.requests
    assert (fresh.action, fresh.serial_number, fresh.token_code) == (
        "GetSessionToken", ADMIN_SERIAL, CODE)  # fmt: skip
    assert (root.action, root.endpoint, root.region) == ("AssumeRoot", "regional", "us-east-1")
    assert (root.target_principal, root.task_policy_arn) == ("111122223333", DELETE)
    assert root.duration_seconds == 900
