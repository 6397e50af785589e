"""Which sealing scheme a token gets, and opening its vault key under that scheme.

``token AEAD`` (:class:`~vaultd.keys.pkcs11.TokenKey`) needs AES-GCM, an HMAC key and writable
data objects inside the token: SoftHSM2, CloudHSM, Luna.  ``token ECDH``
(:class:`~vaultd.keys.ecdh.EcdhTokenKey`) needs EC P-256 key generation and ECDH1_DERIVE: the
PIV family (YubiKey through ykcs11, OpenSC cards), TPMs.  ``token RSA-OAEP``
(:class:`~vaultd.keys.rsa_oaep.RsaTokenKey`) needs RSA key generation and RSA-OAEP decryption:
tokens with RSA but no EC.  ``auto`` keeps a P-256 or RSA key already labelled for vaultd, takes
``ecdh`` on a PIV card, else probes the token: its mechanism list, and at ``vaultd init`` a
trial operation of each part of token AEAD, in session objects that vanish with the session;
``rsa-oaep`` only where the token offers neither token AEAD nor EC ECDH.
"""

from __future__ import annotations

from typing import Any, Final, Literal

from pkcs11 import Attribute, GCMParams, KeyType, Mechanism, ObjectClass, Session
from pkcs11 import exceptions as pkerr

from vaultd.errors import HsmError
from vaultd.keys import piv
from vaultd.keys.pkcs11 import _find_again, _translated, load_module

Scheme = Literal["aead", "ecdh", "rsa-oaep"]
_AEAD_MECHANISMS: Final = frozenset(
    {Mechanism.AES_KEY_GEN, Mechanism.AES_GCM, Mechanism.SHA256_HMAC}
)
_ECDH_MECHANISMS: Final = frozenset({Mechanism.EC_KEY_PAIR_GEN, Mechanism.ECDH1_DERIVE})
_RSA_MECHANISMS: Final = frozenset({Mechanism.RSA_PKCS_KEY_PAIR_GEN, Mechanism.RSA_PKCS_OAEP})
_SCHEMES: Final[dict[str, Scheme]] = {"aead": "aead", "ecdh": "ecdh", "rsa-oaep": "rsa-oaep"}


def choose_scheme(
    module_path: str, token_label: str, key_label: str, requested: str, *, trial: bool
) -> Scheme:
    """The scheme for the vault key ``key_label``: ``requested`` unless it is ``auto``.

    Reads only public objects and the mechanism list (no PIN). With ``trial`` (``vaultd
    init``), token AEAD must also pass a trial in session objects. ``HsmError`` when the token
    offers no scheme.
    """
    if requested in _SCHEMES:
        return _SCHEMES[requested]

    with _translated("probing what the token can do"):
        token = _find_again(load_module(module_path), token_label, module_path)
        mechanisms = frozenset(token.slot.get_mechanisms())
        if piv.is_piv(token):
            return "ecdh"
        with token.open(rw=True) as session:
            if _has_key(session, key_label, KeyType.EC):
                return "ecdh"
            if _has_key(session, key_label, KeyType.RSA):
                return "rsa-oaep"
            if _AEAD_MECHANISMS <= mechanisms and (not trial or _aead_trial(session)):
                return "aead"
    if _ECDH_MECHANISMS <= mechanisms:
        return "ecdh"
    if _RSA_MECHANISMS <= mechanisms:
        return "rsa-oaep"
    raise HsmError(
        f"token {token_label!r} offers neither AES-GCM with HMAC and data objects, nor EC "
        "P-256 with ECDH1_DERIVE, nor RSA with RSA-OAEP, so vaultd cannot seal with it; see "
        "SECURITY.md for the tokens that work"
    )


def _has_key(session: Session, key_label: str, key_type: KeyType) -> bool:
    query = {
        Attribute.CLASS: ObjectClass.PUBLIC_KEY,
        Attribute.KEY_TYPE: key_type,
        Attribute.LABEL: key_label,
    }
    return any(True for _ in session.get_objects(query))


def _aead_trial(session: Session) -> bool:
    """AES-GCM, HMAC-SHA256 and a data object, each tried once in session objects."""

    session_only = {Attribute.TOKEN: False, Attribute.PRIVATE: False}
    try:
        aes: Any = session.generate_key(
            KeyType.AES, 256, template={**session_only, Attribute.ENCRYPT: True}
        )
        aes.encrypt(b"\x00", mechanism=Mechanism.AES_GCM, mechanism_param=GCMParams(b"\x00" * 12))
        mac: Any = session.generate_key(
            KeyType.GENERIC_SECRET, 256, template={**session_only, Attribute.SIGN: True}
        )
        mac.sign(b"\x00", mechanism=Mechanism.SHA256_HMAC)
        data = session.create_object(
            {Attribute.CLASS: ObjectClass.DATA, Attribute.VALUE: b"\x00", **session_only}
        )
    except pkerr.PKCS11Error:
        return False
    for obj in (aes, mac, data):
        obj.destroy()
    return True
