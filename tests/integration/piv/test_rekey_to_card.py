"""`vaultd rekey` from a SoftHSM2 vault onto the emulated YubiKey through Yubico's unchanged
ykcs11: the move most users make, from the demo or a rack HSM to the key on their keyring.

The card's keys are made as `vaultd init` makes them (yubikit: PIN once, the vault key's touch
policy from ``pkcs11.touch_policy``), the config lines printed are the ones a PIV card needs
(slots, not a key label), and once the SoftHSM2 token is gone the card alone opens every record.
The card is fresh for this module.
"""

from __future__ import annotations

import re
import secrets
import shutil
from pathlib import Path

import pytest
from yubikit.piv import KEY_TYPE, MANAGEMENT_KEY_TYPE, PIN_POLICY, SLOT, TOUCH_POLICY

from vaultd.errors import BadRequest
from vaultd.keys.piv import DEFAULT_MANAGEMENT_KEY
from vaultd.testing.harness import Installation, create_installation
from vaultd.testing.pcsc import PivStack

from .conftest import PIN, piv_session, ykcs11_label

SETTINGS = ("module", "token_label", "scheme", "key_label", "piv_slot", "piv_audit_slot")


@pytest.fixture
def inst(tmp_path: Path) -> Installation:
    """A token AEAD vault on SoftHSM2 with two records and a recovery key; touch "never"."""
    inst = create_installation(tmp_path / "i", extra={"pkcs11": {"touch_policy": "never"}})
    inst.add_key_pair("work", "AKIAWORK000000000001", "WorkSecret" + "0" * 30)
    inst.add_key_pair("prod", "AKIAPROD000000000001", "ProdSecret" + "0" * 30)
    inst.vaultd("keys", "add", "--recovery")
    return inst


def _card_args(stack: PivStack, *args: str) -> list[str]:
    assert stack.ykcs11 is not None
    label = ykcs11_label(stack)
    return ["rekey", "--module", str(stack.ykcs11), "--token-label", label, *args]


def _printed(out: str) -> dict[str, str]:
    return dict(re.findall(rf'^({"|".join(SETTINGS)}) = "(.*)"$', out, re.M))


def _switch_and_drop_the_old_token(inst: Installation, out: str) -> None:
    """Set what `rekey` printed and the card's PIN, remove the old token's key, delete it."""
    for name, value in _printed(out).items():
        inst.config["pkcs11"][name] = value
    (inst.root / "pin").write_text(PIN)
    inst.write_config()
    old_id = re.search(r"vaultd keys remove (\S+)", out)
    assert old_id is not None
    inst.vaultd("keys", "remove", old_id[1])
    shutil.rmtree(inst.root / "hsm")


def test_an_hsm_vault_moves_to_a_yubikey_slot_with_the_configured_touch_policy(
    inst: Installation, stack: PivStack
) -> None:
    moved = inst.vaultd(*_card_args(stack, "--piv-slot", "85"), input=f"{PIN}\n".encode())
    out = moved.stdout.decode()
    assert "re-sealed 2 records" in out
    printed = _printed(out)
    assert printed["scheme"] == "ecdh"
    assert (printed["piv_slot"], printed["piv_audit_slot"]) == ("85", "9a")
    assert "key_label" not in printed  # a card's keys are found by slot
    assert "factory default management key" in out  # what init says, said here too
    key = stack.card.state().keys[0x85]
    assert (key.pin_policy, key.touch_policy) == (PIN_POLICY.ONCE, TOUCH_POLICY.NEVER)

    _switch_and_drop_the_old_token(inst, out)
    assert {"work", "prod"} <= set(inst.vaultd("list").stdout.decode().split())
    assert inst.vaultd("audit", "verify").returncode == 0
    resealed = inst.vaultd("rekey").stdout.decode()  # opens every record with the card alone
    assert resealed.startswith("re-sealed 2 records to 2 key(s)")  # the card, the recovery key


def test_a_wrong_management_key_makes_nothing_and_the_right_one_moves_to_rsa_oaep(
    inst: Installation, stack: PivStack
) -> None:
    own_key = secrets.token_bytes(24)  # the card's management key changed, not stored on it
    _set_management_key(stack, DEFAULT_MANAGEMENT_KEY, own_key)
    try:
        args = ["--scheme", "rsa-oaep", "--piv-slot", "86", "--piv-audit-slot", "87"]
        args.append("--management-key-stdin")
        for tried in (None, DEFAULT_MANAGEMENT_KEY):  # no key given: the default is tried
            stdin = PIN + "\n" + ("" if tried is None else tried.hex() + "\n")
            command = _card_args(stack, *(args if tried else args[:-1]))
            refused = inst.vaultd(*command, input=stdin.encode(), check=False)
            (line,) = refused.stderr.decode().strip().splitlines()
            assert "refused the management key" in line and "--management-key-stdin" in line
            assert "vaultd init" not in line  # the command to run again is this one
        assert 0x86 not in stack.card.state().keys and 0x87 not in stack.card.state().keys
        assert {"work", "prod"} <= set(inst.vaultd("list").stdout.decode().split())  # old config

        right = (PIN + "\n" + own_key.hex() + "\n").encode()
        out = inst.vaultd(*_card_args(stack, *args), input=right).stdout.decode()
        printed = _printed(out)
        assert (printed["scheme"], printed["piv_slot"], printed["piv_audit_slot"]) == (
            "rsa-oaep",
            "86",
            "87",
        )
        assert "factory default management key" not in out
        _switch_and_drop_the_old_token(inst, out)
        assert inst.vaultd("rekey").stdout.decode().startswith("re-sealed 2 records to 2 key(s)")
        assert inst.vaultd("audit", "verify").returncode == 0
        doctor = inst.vaultd("doctor", check=False).stdout.decode()
        assert "ok    PIV management key: not the factory default; kept off the card" in doctor
    finally:
        _set_management_key(stack, own_key, DEFAULT_MANAGEMENT_KEY)


def _set_management_key(stack: PivStack, old: bytes, new: bytes) -> None:
    with piv_session(stack) as piv:
        piv.authenticate(old)
        piv.set_management_key(MANAGEMENT_KEY_TYPE.TDES, new)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--piv-slot", "9b"], "not a PIV key slot"),  # 9b is the management key itself
        (["--piv-slot", "85", "--piv-audit-slot", "85"], "two different slots"),
        (["--piv-audit-slot", "zz"], "not a PIV key slot"),
    ],
)
def test_bad_slots_are_refused_before_any_pin(
    inst: Installation, stack: PivStack, args: list[str], message: str
) -> None:
    refused = inst.vaultd(*_card_args(stack, *args), input=b"", check=False)
    assert refused.returncode == BadRequest.exit_status
    (line,) = refused.stderr.decode().strip().splitlines()
    assert message in line


def test_a_slot_holding_a_key_of_another_kind_is_refused_and_nothing_moves(
    inst: Installation, stack: PivStack
) -> None:
    """Slot 88 holds the user's own RSA key; a move to ECDH there must not touch it."""
    with piv_session(stack) as piv:
        piv.authenticate(DEFAULT_MANAGEMENT_KEY)
        piv.generate_key(SLOT.RETIRED7, KEY_TYPE.RSA2048, PIN_POLICY.ONCE, TOUCH_POLICY.NEVER)
    before = stack.card.state().keys[0x88]
    args = ["--scheme", "ecdh", "--piv-slot", "88", "--piv-audit-slot", "89"]
    refused = inst.vaultd(*_card_args(stack, *args), input=f"{PIN}\n".encode(), check=False)
    assert refused.returncode != 0
    (line,) = refused.stderr.decode().strip().splitlines()
    assert "'PIV slot 88' is not a P-256 key" in line and "name a slot that is empty" in line
    assert stack.card.state().keys[0x88] == before  # the user's key is untouched
    assert "re-sealed" not in refused.stdout.decode()
    assert {"work", "prod"} <= set(inst.vaultd("list").stdout.decode().split())
    assert inst.vaultd("audit", "verify").returncode == 0
