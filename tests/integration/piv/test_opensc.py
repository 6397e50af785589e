"""OpenSC's unchanged opensc-pkcs11.so (0.23, PIV driver) against the emulated YubiKey."""

from __future__ import annotations

import pkcs11
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.mechanisms import KDF
from yubikit.piv import OBJECT_ID, SLOT

from vaultd.testing.pcsc import PivStack

from .conftest import PIN, VAULT_KEY_ID, VAULT_SLOT, piv_session


@pytest.fixture
def token(stack: PivStack, card_keys: dict[SLOT, ec.EllipticCurvePublicKey]) -> pkcs11.Token:
    assert stack.opensc is not None
    lib = pkcs11.lib(str(stack.opensc))
    lib.reinitialize()  # OpenSC reads the card's objects once, at C_Initialize
    return lib.get_token()


def _point(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


def test_derive_returns_the_raw_x_coordinate(
    token: pkcs11.Token, card_keys: dict[SLOT, ec.EllipticCurvePublicKey]
) -> None:
    public = card_keys[VAULT_SLOT]
    with token.open(user_pin=PIN) as session:
        private = session.get_key(ObjectClass.PRIVATE_KEY, id=VAULT_KEY_ID)
        assert private.label == "Retired KEY MAN 1"
        peer = ec.generate_private_key(ec.SECP256R1())
        secret = private.derive_key(
            KeyType.GENERIC_SECRET,
            256,
            mechanism=Mechanism.ECDH1_DERIVE,
            mechanism_param=(KDF.NULL, None, _point(peer.public_key())),
            template={Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True},
        )
        assert secret[Attribute.VALUE] == peer.exchange(ec.ECDH(), public)


def test_a_retired_ec_key_is_for_derive_only(token: pkcs11.Token) -> None:
    """OpenSC gives retired (key history) slots the key-management usage: derive, not sign."""
    with token.open(user_pin=PIN) as session:
        private = session.get_key(ObjectClass.PRIVATE_KEY, id=VAULT_KEY_ID)
        assert (private[Attribute.DERIVE], private[Attribute.SIGN]) == (True, False)


def test_retired_keys_are_hidden_without_the_key_history_object(
    stack: PivStack, card_keys: dict[SLOT, ec.EllipticCurvePublicKey]
) -> None:
    with piv_session(stack) as piv:
        history = piv.get_object(OBJECT_ID.KEY_HISTORY)
        piv.authenticate(bytes.fromhex(stack.card.state().mgmt_key_hex))
        piv.put_object(OBJECT_ID.KEY_HISTORY)
    try:
        assert stack.opensc is not None
        lib = pkcs11.lib(str(stack.opensc))
        lib.reinitialize()
        with lib.get_token().open(user_pin=PIN) as session:
            assert not list(session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY}))
    finally:
        with piv_session(stack) as piv:
            piv.authenticate(bytes.fromhex(stack.card.state().mgmt_key_hex))
            piv.put_object(OBJECT_ID.KEY_HISTORY, history)
