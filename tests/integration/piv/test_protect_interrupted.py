"""docs/threat-model.md F41: `vaultd init --protect-management-key` interrupted at each card
write (the emulated YubiKey pulled at that command, through Yubico's unchanged ykcs11 and
yubikit): the card is never left with a management key nobody knows, and running the same
command again completes it.

The writes are the PIN-protected object that keeps the new key (PUT DATA 5FC109), the PIVMAN
flag that says it is there (PUT DATA 5FFF00) and the key change itself (SET MANAGEMENT KEY).
The card is fresh for this module; each case puts the factory default back.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest
from yubikit.core import CommandError
from yubikit.piv import DEFAULT_MANAGEMENT_KEY, MANAGEMENT_KEY_TYPE

from vaultd.testing.harness import Installation, create_installation
from vaultd.testing.pcsc import PivStack
from vaultd.testing.piv_card import PivState

from .conftest import PIN, card_token, piv_session

PUT_DATA, SET_MANAGEMENT_KEY = 0xDB, 0xFF
PIVMAN_DATA, PIVMAN_PROTECTED = 0x5FFF00, 0x5FC109


@pytest.fixture(scope="module")
def vault(stack: PivStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installation]:
    """`vaultd init` on the fresh card (factory default management key); no daemon."""
    root = tmp_path_factory.mktemp("yk-protect")
    with create_installation(root, token=card_token(stack, root)) as inst:
        yield inst


def _stored_key(state: PivState) -> str | None:
    """The management key kept in the PIN-protected object (TLV 88 { 89 len key }), hex."""
    raw = state.objects.get(PIVMAN_PROTECTED, "").lower()
    start = raw.find("8918")
    return raw[start + 4 : start + 4 + 48] if start >= 0 else None


def _known_key(state: PivState) -> bool:
    """Whether the card's management key is one the owner can still get: the factory default,
    or the one stored PIN-protected on the card."""
    return state.mgmt_key_hex in (DEFAULT_MANAGEMENT_KEY.hex(), _stored_key(state))


def _init_in_slot(vault: Installation, slot: str) -> subprocess.CompletedProcess[bytes]:
    """`vaultd init` with the vault key in ``slot``, a store of its own; the config put back."""
    saved = dict(vault.config["pkcs11"]), vault.config["data_dir"]
    vault.config["pkcs11"]["piv_slot"] = slot
    vault.config["data_dir"] = str(vault.root / f"data-{slot}")
    vault.write_config()
    try:
        return vault.vaultd("init", "--no-backup", check=False)
    finally:
        vault.config["pkcs11"], vault.config["data_dir"] = saved
        vault.write_config()


def _factory_default(stack: PivStack) -> None:
    """The card's management key back to the default, no PIVMAN objects."""
    state = stack.card.state()
    with piv_session(stack) as piv:
        piv.authenticate(bytes.fromhex(state.mgmt_key_hex))
        piv.set_management_key(MANAGEMENT_KEY_TYPE.TDES, DEFAULT_MANAGEMENT_KEY)
        for obj in (PIVMAN_DATA, PIVMAN_PROTECTED):
            piv.put_object(obj, None)


@pytest.mark.parametrize(
    ("ins", "skip", "slot"),
    [(PUT_DATA, 0, "8a"), (PUT_DATA, 1, "8b"), (SET_MANAGEMENT_KEY, 0, "8c")],
    ids=["first-put-data", "second-put-data", "set-management-key"],
)
def test_a_card_pulled_mid_protect_keeps_a_known_key_and_the_rerun_completes(
    stack: PivStack, vault: Installation, ins: int, skip: int, slot: str
) -> None:
    stack.card.pull_at(ins, skip=skip)
    try:
        failed = vault.vaultd("init", "--protect-management-key", check=False)
        assert stack.card.pulled
    finally:
        stack.card.reinsert()
    try:
        assert failed.returncode != 0
        assert len(failed.stderr.splitlines()) == 1, failed.stderr
        assert _known_key(stack.card.state())
        made = _init_in_slot(vault, slot)  # keys are still made, with the key that works
        assert made.returncode == 0, made.stderr
        assert f"generated a P-256 key in PIV slot {slot}".encode() in made.stdout
        assert b"factory default management key, which anyone" in made.stdout
        doctor = vault.vaultd("doctor", check=False).stdout.decode()
        interrupted = "WARN  PIV management key: an interrupted `vaultd init --protect-"
        assert (interrupted in doctor) == (ins == SET_MANAGEMENT_KEY)  # flagged, not yet set

        done = vault.vaultd("init", "--protect-management-key", check=False)
        assert done.returncode == 0, done.stderr
        assert b"stored PIN-protected on the card" in done.stdout
        state = stack.card.state()
        assert state.mgmt_key_hex != DEFAULT_MANAGEMENT_KEY.hex()
        assert state.mgmt_key_hex == _stored_key(state)
        assert PIVMAN_DATA in state.objects
        with piv_session(stack) as piv, pytest.raises(CommandError):
            piv.authenticate(DEFAULT_MANAGEMENT_KEY)
        doctor = vault.vaultd("doctor", check=False).stdout.decode()
        assert "ok    PIV management key: not the factory default; stored PIN-protected" in doctor
    finally:
        _factory_default(stack)


def test_protect_on_an_already_protected_card_is_refused_and_changes_nothing(
    stack: PivStack, vault: Installation
) -> None:
    try:
        vault.vaultd("init", "--protect-management-key")
        before = stack.card.state()
        again = vault.vaultd("init", "--protect-management-key", check=False)
        assert again.returncode != 0 and b"already stored PIN-protected" in again.stderr
        after = stack.card.state()
        assert (after.mgmt_key_hex, after.objects) == (before.mgmt_key_hex, before.objects)
    finally:
        _factory_default(stack)


def test_doctor_is_quiet_about_a_pin_and_puk_that_were_changed(
    stack: PivStack, vault: Installation
) -> None:
    pin, puk = "741852", "96385274"
    with piv_session(stack) as piv:
        piv.change_pin(PIN, pin)
        piv.change_puk("12345678", puk)
    (vault.root / "pin").write_text(pin)
    try:
        doctor = vault.vaultd("doctor", check=False).stdout.decode()
        assert "ok    token, key and store" in doctor
        assert "PIV PIN" not in doctor and "PIV PUK" not in doctor
        assert "WARN  PIV management key: the factory default" in doctor
    finally:
        with piv_session(stack) as piv:
            piv.change_pin(pin, PIN)
            piv.change_puk(puk, "12345678")
        (vault.root / "pin").write_text(PIN)
