"""The requesting terminal is told "touch your YubiKey" while ykcs11 blocks on a touch (issue 14).

The vault key is made with yubikit in slot 82 with touch policy "always" (ykcs11 2.2 cannot set a
policy); the emulated user touches it 1 s after the card asks, past the daemon's 0.5 s late
prompt. Through a pty, `vaultd credential-process` shows the line, then the code prompt, then
the credentials. The card is fresh for this module, with a touch timeout longer than the delay.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pkcs11
import pytest
from yubikit.piv import DEFAULT_MANAGEMENT_KEY, KEY_TYPE, PIN_POLICY, SLOT, TOUCH_POLICY

from vaultd.testing.fake_sts import FakeSts
from vaultd.testing.harness import (
    Installation,
    approve_pending,
    create_installation,
    read_until,
)
from vaultd.testing.pcsc import PivStack, piv_stack
from vaultd.testing.softhsm import create_token

from ..daemon.test_approval_unavailable import credproc, finish
from .conftest import PIN, card_token, piv_session, ykcs11_label

SECRET = "CanarySecretKey0000000000000000000000003"


@pytest.fixture(scope="module")
def stack(pcsc_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PivStack]:
    """pcscd with a fresh emulated YubiKey whose user touches it 1 s after it asks."""
    state = tmp_path_factory.mktemp("card") / "card.json"
    with piv_stack(pcsc_dir, state, touch_timeout=10.0) as running:
        for module in (running.ykcs11, running.opensc):
            if module is not None:
                pkcs11.lib(str(module)).reinitialize()  # drop a context on an earlier pcscd
        yield running


@pytest.fixture(scope="module")
def vault(stack: PivStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installation]:
    """`vaultd init` on a card whose vault key wants a touch on every use; daemon running."""
    with piv_session(stack) as piv:
        piv.authenticate(DEFAULT_MANAGEMENT_KEY)
        piv.generate_key(SLOT.RETIRED1, KEY_TYPE.ECCP256, PIN_POLICY.ONCE, TOUCH_POLICY.ALWAYS)
    root = tmp_path_factory.mktemp("yk-touch")
    token = card_token(stack, root)
    with FakeSts() as sts:
        inst = create_installation(root, sts_url=sts.url, token=token, extra={"pkcs11": {}})
        inst.add_key_pair("dev", "AKIACANARY0000000003", SECRET)
        with inst:
            inst.start_daemon()
            yield inst


def test_the_terminal_is_told_to_touch_before_the_card_answers(
    stack: PivStack, vault: Installation
) -> None:
    stack.card.touch_delay = 1.0
    touches = stack.card.touches
    master, slave = os.openpty()
    try:
        client = credproc(vault, stdin=slave)
        shown = read_until(master, b"touch your YubiKey")
        assert b"vaultd: touch your YubiKey to open the keys of profile dev" in shown, shown
        approver = threading.Thread(target=approve_pending, args=(vault, "909090"))
        approver.start()
        shown += read_until(master, b"credentials issued")
        approver.join()
        code, out, err = finish(client)
    finally:
        stack.card.touch_delay = 0.0
        os.close(master)
        os.close(slave)
    assert code == 0, err
    assert stack.card.touches > touches  # the card waited for the touches it was given
    assert shown.index(b"touch your YubiKey") < shown.index(b"credentials issued"), shown
    assert SECRET.encode() not in out + err + shown
    assert b"touch your YubiKey" not in vault.vaultd("approvals").stdout  # over once opened


def test_a_command_that_opens_records_says_touch_on_its_terminal(
    stack: PivStack, vault: Installation
) -> None:
    """`vaultd rekey` opens every record in the command itself, not in the daemon: each open
    that waits for the card's touch is announced on the command's stderr, as the daemon does."""
    stack.card.touch_delay = 1.0
    touches = stack.card.touches
    try:
        done = vault.vaultd("rekey", check=False)
    finally:
        stack.card.touch_delay = 0.0
    assert done.returncode == 0, done.stderr
    said = done.stderr.decode().count("vaultd: touch your YubiKey (it blinks) to open a record")
    assert said == stack.card.touches - touches >= 1  # one line per open that waited
    assert b"re-sealed 1 records" in done.stdout


def _said(proc: subprocess.CompletedProcess[bytes]) -> int:
    assert proc.returncode == 0, proc.stderr
    return proc.stderr.decode().count("vaultd: touch your YubiKey (it blinks) to open a record")


def test_a_backup_yubikey_that_wants_a_touch_says_so_on_add_and_recover(
    stack: PivStack, tmp_path: Path
) -> None:
    """A touch-always key in slot 84 as the backup token of a SoftHSM2 vault: enrolling it (an
    ECDH in the card) and recovering with it alone (one per record) are announced per touch."""
    with piv_session(stack) as piv:
        piv.authenticate(DEFAULT_MANAGEMENT_KEY)
        piv.generate_key(SLOT.RETIRED3, KEY_TYPE.ECCP256, PIN_POLICY.ONCE, TOUCH_POLICY.ALWAYS)
    inst = create_installation(tmp_path / "i")
    inst.add_key_pair("work", "AKIAWORK000000000001", "WorkSecret" + "0" * 30)
    assert stack.ykcs11 is not None
    args = ["--token", "--module", str(stack.ykcs11), "--token-label", ykcs11_label(stack)]
    args += ["--piv-slot", "84"]
    pin = PIN.encode() + b"\n"
    stack.card.touch_delay = 1.0
    try:
        touches = stack.card.touches
        added = inst.vaultd("keys", "add", *args, input=pin, check=False)
        assert _said(added) == stack.card.touches - touches >= 1

        for token_dir in (inst.root / "hsm" / "tokens").iterdir():  # the vault's token is lost
            shutil.rmtree(token_dir)
        fresh = create_token(inst.root / "hsm", label="fresh")
        (inst.root / "pin").write_text(fresh.user_pin)
        inst.config["pkcs11"]["token_label"] = "fresh"
        inst.write_config()
        touches = stack.card.touches
        recovered = inst.vaultd("keys", "recover", *args, input=pin, check=False)
        assert _said(recovered) == stack.card.touches - touches >= 1
        assert b"recovered 1 records" in recovered.stdout
    finally:
        stack.card.touch_delay = 0.0


def test_a_served_request_costs_one_touch(stack: PivStack, vault: Installation) -> None:
    """A cold release on a touch-always key opens one record: one touch on the card, for the
    first request of a fresh daemon too (the store's index tag, by the touch-never audit key,
    authenticates the file; it was three touches: the index opened on each of two loads)."""
    vault.stop_daemon()
    vault.start_daemon()
    for code in ("919191", "929292"):
        vault.vaultd("clear", "dev")
        touches = stack.card.touches
        master, slave = os.openpty()
        try:
            client = credproc(vault, stdin=slave)
            approve_pending(vault, code)
            status, out, err = finish(client)
        finally:
            os.close(master)
            os.close(slave)
        assert status == 0, err
        assert b"SessionToken" in out
        assert stack.card.touches - touches == 1


def test_adding_a_profile_opens_no_record(stack: PivStack, vault: Installation) -> None:
    """A write keeps the other records as sealed: `vaultd add` to a store of four profiles asks
    for no touch (it was one per record: every record was opened and sealed again)."""
    for i in range(3):
        vault.add_key_pair(f"p{i}", f"AKIATOUCH0000000{i:04d}", SECRET)
    touches = stack.card.touches
    vault.add_key_pair("p9", "AKIATOUCH00000009999", SECRET)
    assert stack.card.touches == touches
    listed = vault.vaultd("list").stdout
    assert all(name in listed for name in (b"dev", b"p0", b"p9"))
