"""`pkcs11.touch_policy = "always"` and `vaultd init --protect-management-key` on the emulated
YubiKey through Yubico's unchanged ykcs11 (issue 14 item 2).

The card is fresh for this module. Its keys, P-256 or (under rsa-oaep) RSA-2048, are made by
`vaultd init` through yubikit (ykcs11 2.2 sets no policy); the management key is then replaced
by a random one kept PIN-protected on the card, which later inits read back with the PIN.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pkcs11
import pytest
from yubikit.core import CommandError
from yubikit.piv import DEFAULT_MANAGEMENT_KEY, MANAGEMENT_KEY_TYPE, PIN_POLICY, TOUCH_POLICY

from vaultd.keys.ecdh import EcdhTokenKey
from vaultd.keys.rsa_oaep import RsaTokenKey
from vaultd.testing.harness import Installation, create_installation
from vaultd.testing.pcsc import PivStack

from .conftest import PIN, card_token, piv_session, without_yubikit

PIVMAN_DATA, PIVMAN_PROTECTED = 0x5FFF00, 0x5FC109


@pytest.fixture(scope="module")
def vault(stack: PivStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installation]:
    """`vaultd init` on the fresh card with touch_policy "always"; no daemon."""
    root = tmp_path_factory.mktemp("yk-always")
    extra = {"pkcs11": {"touch_policy": "always"}}
    with create_installation(root, token=card_token(stack, root), extra=extra) as inst:
        yield inst


def _init(vault: Installation, slot: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    """`vaultd init ARGS` with the vault key in ``slot``: a store of its own."""
    vault.config["pkcs11"]["piv_slot"] = slot
    vault.config["data_dir"] = str(vault.root / f"data-{slot}")
    vault.write_config()
    return vault.vaultd("init", *args, check=False)


def test_init_makes_the_vault_key_touch_always_and_doctor_says_so(
    stack: PivStack, vault: Installation
) -> None:
    vault_key, audit_key = stack.card.state().keys[0x82], stack.card.state().keys[0x9A]
    assert (vault_key.pin_policy, vault_key.touch_policy) == (PIN_POLICY.ONCE, TOUCH_POLICY.ALWAYS)
    assert (audit_key.pin_policy, audit_key.touch_policy) == (PIN_POLICY.ONCE, TOUCH_POLICY.NEVER)
    doctor = vault.vaultd("doctor", check=False).stdout.decode()
    assert "PIV slot 82 policy: PIN once, touch always" in doctor
    assert "malware that has the PIN cannot open a record without it" in doctor


def test_every_record_open_waits_for_a_touch(stack: PivStack, vault: Installation) -> None:
    module, label = vault.token.module_path, vault.token.label
    pkcs11.lib(module).reinitialize()
    key = EcdhTokenKey.open(module, label, "unused", PIN)
    try:
        sealed = [(key.random(12), f"record {n}".encode()) for n in range(3)]
        bodies = [key.encrypt(iv, aad, aad) for iv, aad in sealed]  # sealing needs no touch
        touches = stack.card.touches
        for (iv, aad), body in zip(sealed * 2, bodies * 2, strict=True):
            assert key.decrypt(iv, body, aad) == aad
        assert stack.card.touches == touches + 6  # one touch per open, none cached
    finally:
        key.close()


def test_without_yubikit_a_touch_policy_is_refused(
    stack: PivStack, vault: Installation, tmp_path: Path
) -> None:
    vault.config["pkcs11"]["piv_slot"] = "91"
    vault.config["data_dir"] = str(vault.root / "data-91")
    vault.write_config()
    env = without_yubikit(vault.env, tmp_path)
    refused = subprocess.run(
        [sys.executable, "-m", "vaultd", "init"], env=env, capture_output=True, check=False
    )
    assert refused.returncode != 0
    assert len(refused.stderr.splitlines()) == 1, refused.stderr
    assert b"touch_policy = 'always' needs yubikit" in refused.stderr
    assert b"pip install 'vaultd[yubikey]'" in refused.stderr
    assert 0x91 not in stack.card.state().keys


def test_protect_refuses_a_management_key_that_is_not_the_default(
    stack: PivStack, vault: Installation
) -> None:
    other = os.urandom(24)
    with piv_session(stack) as session:
        session.authenticate(DEFAULT_MANAGEMENT_KEY)
        session.set_management_key(MANAGEMENT_KEY_TYPE.TDES, other)
    try:
        refused = _init(vault, "8e", "--protect-management-key")
        assert refused.returncode != 0
        assert len(refused.stderr.splitlines()) == 1, refused.stderr
        assert b"replaces only the factory default management key" in refused.stderr
        assert stack.card.state().mgmt_key_hex == other.hex()
        assert PIVMAN_PROTECTED not in stack.card.state().objects
        assert 0x8E not in stack.card.state().keys
    finally:
        with piv_session(stack) as session:
            session.authenticate(other)
            session.set_management_key(MANAGEMENT_KEY_TYPE.TDES, DEFAULT_MANAGEMENT_KEY)


def test_protect_stores_a_random_key_that_later_inits_read(
    stack: PivStack, vault: Installation
) -> None:
    done = _init(vault, "8f", "--protect-management-key")
    assert done.returncode == 0, done.stderr
    state = stack.card.state()
    stored = state.mgmt_key_hex
    assert stored != DEFAULT_MANAGEMENT_KEY.hex() and len(stored) == 48  # 3DES, for ykcs11
    assert f"89{len(stored) // 2:02x}{stored}" in state.objects[PIVMAN_PROTECTED].lower()
    assert PIVMAN_DATA in state.objects
    assert stored.encode() not in (done.stdout + done.stderr).lower()
    assert b"stored PIN-protected on the card" in done.stdout
    assert b"factory default management key, which anyone" not in done.stdout
    assert state.keys[0x8F].touch_policy == TOUCH_POLICY.ALWAYS
    with piv_session(stack) as session, pytest.raises(CommandError):
        session.authenticate(DEFAULT_MANAGEMENT_KEY)  # the default no longer authenticates
    # A later init reads the stored key with the PIN: a new key, and Key History counts it.
    again = _init(vault, "90")
    assert again.returncode == 0, again.stderr
    assert b"generated a P-256 key in PIV slot 90 (PIN once, touch always)" in again.stdout
    assert stored.encode() not in (again.stdout + again.stderr).lower()
    assert "c1010f" in stack.card.state().objects[0x5FC10C].lower()  # retired slot 15 = 90
    twice = _init(vault, "90", "--protect-management-key")
    assert twice.returncode != 0 and len(twice.stderr.splitlines()) == 1, twice.stderr
    assert b"already stored PIN-protected" in twice.stderr
    assert stack.card.state().mgmt_key_hex == stored


def test_rsa_keys_follow_the_touch_policy_too(stack: PivStack, vault: Installation) -> None:
    """Under rsa-oaep, init makes RSA-2048 keys through the same yubikit path: the vault key
    touch always (each open waits for its own touch), the audit key never; doctor says so."""
    saved = dict(vault.config["pkcs11"])
    vault.config["pkcs11"].update(scheme="rsa-oaep", piv_audit_slot="9d")
    try:
        done = _init(vault, "92")
        assert done.returncode == 0, done.stderr
        assert b"generated an RSA-2048 key in PIV slot 92 (PIN once, touch always)" in done.stdout
        keys = stack.card.state().keys
        assert (keys[0x92].pin_policy, keys[0x92].touch_policy) == (
            PIN_POLICY.ONCE,
            TOUCH_POLICY.ALWAYS,
        )
        assert (keys[0x9D].pin_policy, keys[0x9D].touch_policy) == (
            PIN_POLICY.ONCE,
            TOUCH_POLICY.NEVER,
        )
        doctor = vault.vaultd("doctor", check=False).stdout.decode()
        assert "PIV slot 92 policy: PIN once, touch always" in doctor
        module, label = vault.token.module_path, vault.token.label
        pkcs11.lib(module).reinitialize()
        key = RsaTokenKey.open(module, label, "unused", PIN, piv_slots=("92", "9d"))
        try:
            iv, aad = key.random(12), b"record"
            body = key.encrypt(iv, b"touch-me", aad)  # sealing needs no touch
            touches = stack.card.touches
            assert key.decrypt(iv, body, aad) == key.decrypt(iv, body, aad) == b"touch-me"
            assert stack.card.touches == touches + 2  # one touch per open, none cached
        finally:
            key.close()
    finally:
        vault.config["pkcs11"] = saved
        vault.write_config()
