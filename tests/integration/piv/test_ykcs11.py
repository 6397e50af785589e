"""Yubico's unchanged ykcs11 (Debian 2.2) against the emulated YubiKey."""

from __future__ import annotations

from collections.abc import Iterator

import pkcs11
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11._pkcs11 import DeriveMixin
from pkcs11.mechanisms import KDF
from pkcs11.util.ec import encode_named_curve_parameters
from yubikit.piv import SLOT

from vaultd.testing.pcsc import PivStack

from .conftest import PIN, SO_PIN, TOUCH_KEY_ID, TOUCH_SLOT, VAULT_KEY_ID, VAULT_SLOT, ykcs11_label


@pytest.fixture
def token(stack: PivStack) -> pkcs11.Token:
    assert stack.ykcs11 is not None
    return pkcs11.lib(str(stack.ykcs11)).get_token(token_label=ykcs11_label(stack))


@pytest.fixture
def session(token: pkcs11.Token) -> Iterator[pkcs11.Session]:
    with token.open(user_pin=PIN) as opened:
        yield opened


def _point(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


def _ecdh(private: pkcs11.PrivateKey, peer_point: bytes) -> bytes:
    """C_DeriveKey(ECDH1_DERIVE, CKD_NULL): ykcs11 keys say CKA_DERIVE=false, so call it unbound."""
    secret = DeriveMixin.derive_key(
        private,
        KeyType.GENERIC_SECRET,
        256,
        mechanism=Mechanism.ECDH1_DERIVE,
        mechanism_param=(KDF.NULL, None, peer_point),
        template={Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True},
    )
    value: bytes = secret[Attribute.VALUE]
    return value


def test_the_key_is_found_by_label_and_id(
    session: pkcs11.Session, card_keys: dict[SLOT, ec.EllipticCurvePublicKey]
) -> None:
    by_label = session.get_key(ObjectClass.PRIVATE_KEY, label="Private key for Retired Key 1")
    assert by_label[Attribute.ID] == VAULT_KEY_ID
    assert by_label[Attribute.KEY_TYPE] == KeyType.EC
    assert by_label[Attribute.DERIVE] is False  # the quirk the unbound derive call works around
    public = session.get_key(ObjectClass.PUBLIC_KEY, id=VAULT_KEY_ID)
    point = public[Attribute.EC_POINT]
    assert _point(card_keys[VAULT_SLOT]) in point  # DER OCTET STRING around the point


def test_sign_and_derive(
    session: pkcs11.Session, card_keys: dict[SLOT, ec.EllipticCurvePublicKey]
) -> None:
    public = card_keys[VAULT_SLOT]
    private = session.get_key(ObjectClass.PRIVATE_KEY, id=VAULT_KEY_ID)
    signature = private.sign(b"vaultd", mechanism=Mechanism.ECDSA_SHA256)
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    public.verify(encode_dss_signature(r, s), b"vaultd", ec.ECDSA(hashes.SHA256()))
    peer = ec.generate_private_key(ec.SECP256R1())
    assert _ecdh(private, _point(peer.public_key())) == peer.exchange(ec.ECDH(), public)


def test_touch_that_never_comes_releases_nothing(
    stack: PivStack,
    session: pkcs11.Session,
    card_keys: dict[SLOT, ec.EllipticCurvePublicKey],
) -> None:
    private = session.get_key(ObjectClass.PRIVATE_KEY, id=TOUCH_KEY_ID)
    peer = ec.generate_private_key(ec.SECP256R1())
    stack.card.touch_comes = False
    try:
        with pytest.raises(pkcs11.FunctionFailed):  # the card answered 69 82
            _ecdh(private, _point(peer.public_key()))
    finally:
        stack.card.touch_comes = True
    assert card_keys[TOUCH_SLOT] is not None


def test_wrong_pin_is_pin_incorrect_and_costs_a_retry(stack: PivStack, token: pkcs11.Token) -> None:
    before = stack.card.state().pin_left
    with pytest.raises(pkcs11.PinIncorrect):
        token.open(user_pin="999999")
    assert stack.card.state().pin_left == before - 1
    with token.open(user_pin=PIN):
        assert stack.card.state().pin_left == stack.card.state().pin_total


def test_keygen_with_the_management_key_as_so_pin(stack: PivStack) -> None:
    assert stack.ykcs11 is not None
    lib = pkcs11.lib(str(stack.ykcs11))
    lib.reinitialize()  # SO login refuses while a read-only session is open in the process
    token = lib.get_token(token_label=ykcs11_label(stack))
    with token.open(rw=True, so_pin=SO_PIN) as so:
        public, private = so.generate_keypair(
            KeyType.EC,
            public_template={
                Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1"),
                Attribute.ID: b"\x07",  # slot 84, Retired Key 3
            },
            private_template={Attribute.ID: b"\x07"},
            store=True,
        )
        point = public[Attribute.EC_POINT]
    meta = stack.card.state().keys[SLOT.RETIRED3]
    assert (meta.pin_policy, meta.touch_policy) == (2, 1)  # 2.2 sends no policy: card defaults
    with token.open(user_pin=PIN) as user:
        private = user.get_key(ObjectClass.PRIVATE_KEY, label="Private key for Retired Key 3")
        peer = ec.generate_private_key(ec.SECP256R1())
        card_public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point[-65:])
        assert _ecdh(private, _point(peer.public_key())) == peer.exchange(ec.ECDH(), card_public)
