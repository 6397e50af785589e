"""yubikit's PivSession against the emulated YubiKey over pyscard and the private pcscd."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from yubikit.core.smartcard import ApduError
from yubikit.piv import (
    DEFAULT_MANAGEMENT_KEY,
    KEY_TYPE,
    MANAGEMENT_KEY_TYPE,
    PIN_POLICY,
    SLOT,
    TOUCH_POLICY,
    InvalidPinError,
)

from vaultd.testing.pcsc import PivStack

from .conftest import PIN, VAULT_SLOT, piv_session


def test_version_serial_and_management_key_type(stack: PivStack) -> None:
    with piv_session(stack) as piv:
        assert tuple(piv.version) == stack.card.state().version
        assert piv.get_serial() == stack.card.state().serial
        assert piv.management_key_type == MANAGEMENT_KEY_TYPE.TDES
        assert piv.get_management_key_metadata().default_value


def test_wrong_pin_costs_a_retry_and_the_right_one_restores_them(stack: PivStack) -> None:
    with piv_session(stack) as piv:
        with pytest.raises(InvalidPinError) as wrong:
            piv.verify_pin("654321")
        assert wrong.value.attempts_remaining == 2
        assert piv.get_pin_metadata().attempts_remaining == 2
        piv.verify_pin(PIN)
        assert piv.get_pin_attempts() == 3


def test_wrong_management_key_is_refused(stack: PivStack) -> None:
    with piv_session(stack) as piv, pytest.raises(ApduError):
        piv.authenticate(bytes(24))


def test_generate_sign_and_ecdh(
    stack: PivStack, card_keys: dict[SLOT, ec.EllipticCurvePublicKey]
) -> None:
    public = card_keys[VAULT_SLOT]
    with piv_session(stack) as piv:
        meta = piv.get_slot_metadata(VAULT_SLOT)
        assert (meta.key_type, meta.pin_policy, meta.touch_policy, meta.generated) == (
            KEY_TYPE.ECCP256,
            PIN_POLICY.ONCE,
            TOUCH_POLICY.CACHED,
            True,
        )
        with pytest.raises(ApduError):  # PIN policy "once": nothing before VERIFY
            piv.sign(VAULT_SLOT, KEY_TYPE.ECCP256, b"vaultd", hashes.SHA256())
        piv.verify_pin(PIN)
        signature = piv.sign(VAULT_SLOT, KEY_TYPE.ECCP256, b"vaultd", hashes.SHA256())
        public.verify(signature, b"vaultd", ec.ECDSA(hashes.SHA256()))
        peer = ec.generate_private_key(ec.SECP256R1())
        assert piv.calculate_secret(VAULT_SLOT, peer.public_key()) == peer.exchange(
            ec.ECDH(), public
        )
    assert stack.card.touches >= 1


def test_p384_and_rsa2048_keys(stack: PivStack) -> None:
    with piv_session(stack) as piv:
        piv.authenticate(DEFAULT_MANAGEMENT_KEY)
        piv.verify_pin(PIN)
        p384 = piv.generate_key(SLOT.RETIRED5, KEY_TYPE.ECCP384)
        assert isinstance(p384, ec.EllipticCurvePublicKey)
        signature = piv.sign(SLOT.RETIRED5, KEY_TYPE.ECCP384, b"x", hashes.SHA384())
        p384.verify(signature, b"x", ec.ECDSA(hashes.SHA384()))
        peer = ec.generate_private_key(ec.SECP384R1())
        assert piv.calculate_secret(SLOT.RETIRED5, peer.public_key()) == peer.exchange(
            ec.ECDH(), p384
        )
        rsa_public = piv.generate_key(SLOT.RETIRED6, KEY_TYPE.RSA2048)  # a >256-byte reply
        assert isinstance(rsa_public, rsa.RSAPublicKey)
        oaep = padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(), None)
        assert piv.decrypt(SLOT.RETIRED6, rsa_public.encrypt(b"dk", oaep), oaep) == b"dk"
