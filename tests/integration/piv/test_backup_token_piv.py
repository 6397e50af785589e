"""The emulated YubiKey through Yubico's unchanged ykcs11 as the backup token of a SoftHSM2
vault (issue 14): enrolled by its PIV slot, it alone recovers the store once the vault's token
is deleted. The card is fresh for this module."""

from __future__ import annotations

import shutil
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec
from yubikit.piv import DEFAULT_MANAGEMENT_KEY, KEY_TYPE, PIN_POLICY, SLOT, TOUCH_POLICY

from vaultd.testing.harness import create_installation
from vaultd.testing.pcsc import PivStack
from vaultd.testing.softhsm import create_token

from .conftest import PIN, piv_session, ykcs11_label

SLOT_84 = SLOT.RETIRED3


def test_a_yubikey_backup_alone_recovers_a_softhsm_vault(stack: PivStack, tmp_path: Path) -> None:
    with piv_session(stack) as piv:
        piv.authenticate(DEFAULT_MANAGEMENT_KEY)
        public = piv.generate_key(SLOT_84, KEY_TYPE.ECCP256, PIN_POLICY.ONCE, TOUCH_POLICY.NEVER)
        assert isinstance(public, ec.EllipticCurvePublicKey)  # ykcs11 finds it by metadata
    assert stack.ykcs11 is not None
    inst = create_installation(tmp_path / "i")
    inst.add_key_pair("work", "AKIAWORK000000000001", "WorkSecret" + "0" * 30)
    label = ykcs11_label(stack)
    args = ["--token", "--module", str(stack.ykcs11), "--token-label", label, "--piv-slot", "84"]
    pin = PIN.encode() + b"\n"
    inst.vaultd("keys", "add", *args, input=pin)
    listed = inst.vaultd("keys", "list").stdout.decode()
    assert f"label={label} key=PIV slot 84" in listed

    for d in (inst.root / "hsm" / "tokens").iterdir():  # the vault's token is lost
        shutil.rmtree(d)
    fresh = create_token(inst.root / "hsm", label="fresh")
    (inst.root / "pin").write_text(fresh.user_pin)
    inst.config["pkcs11"]["token_label"] = "fresh"
    inst.write_config()
    done = inst.vaultd("keys", "recover", *args, input=pin)
    assert b"recovered 1 records" in done.stdout
    assert b"work" in inst.vaultd("list").stdout
