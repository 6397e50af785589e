"""Token RSA-OAEP sealing: an RSA-2048 key that never leaves the token unwraps each record's key.

For tokens with RSA but no EC (issue 14).  To seal, with no token call: a fresh 32-byte data key
per record, AES-256-GCM on the host under it with the record's AAD, and the data key wrapped on
the host to the token's public key with RSA-OAEP (SHA-256, MGF1-SHA-256, empty label).  The body
is wrapped key (256 bytes) || ciphertext || tag.  To open: one ``C_Decrypt(CKM_RSA_PKCS_OAEP)``
in the token per record, then AES-GCM on the host.  Never PKCS#1 v1.5: only OAEP is ever asked
of the token, so a v1.5 wrapping fails its padding check and the record is corrupt.  No data key
is ever kept: it is in host memory for the moment of one open (docs/threat-model.md T5, T32).

The key id is ``rsa-oaep:`` and 32 hex chars of SHA-256 over the token's public key (DER
SubjectPublicKeyInfo), so records are bound to the key on the card, not to the module that
reaches it, and the scheme is inside every AAD and the store index (a downgrade is refused).

The audit MAC is the token's HMAC where it offers one, else an RSA-PSS (SHA-256, MGF1-SHA-256,
32-byte salt) signature by a second token key (:data:`SIGNATURE_PREFIX`), checked on the host.
The store generation is anchored as :mod:`vaultd.keys.ecdh` does.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any, Final, Literal, cast

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pkcs11 import MGF, Attribute, KeyType, Mechanism, MechanismFlag, ObjectClass, Session, Token
from pkcs11 import exceptions as pkerr
from pkcs11._pkcs11 import DecryptMixin, SignMixin  # type: ignore[attr-defined]  # not in stub

from vaultd.errors import AuditTampered, HsmError, RecordCorrupt
from vaultd.keys import piv
from vaultd.keys.ecdh import (
    _TAMPERED,
    HostSealedKey,
    _Audit,
    _KeyObject,
    _Open,
    _Opened,
    _unsafe,
    check_key,
    find_audit,
    wants_hmac,
)
from vaultd.keys.pkcs11 import IV_LEN, TAG_LEN, _close_quietly

SCHEME: Final = "rsa-oaep"
"""The scheme name; key ids of this scheme start with ``rsa-oaep:``."""
MODULUS_BITS: Final = piv.RSA_BITS
WRAPPED_LEN: Final = MODULUS_BITS // 8
"""An RSA-2048 OAEP ciphertext: 256 bytes."""
SIGNATURE_PREFIX: Final = b"rsa-pss:"
"""Audit tags that are RSA-PSS signatures (256 bytes) start with this."""
DATA_KEY_LEN: Final = 32
_SALT_LEN: Final = 32
_OAEP_PARAM: Final = (Mechanism.SHA256, MGF.SHA256, None)
_PSS_PARAM: Final = (Mechanism.SHA256, MGF.SHA256, _SALT_LEN)
_OAEP: Final = padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(), None)
_PSS: Final = padding.PSS(padding.MGF1(hashes.SHA256()), _SALT_LEN)
_ID_BYTES: Final = 16

AuditMode = Literal["auto", "hmac", "pss"]
"""Which audit key ``vaultd init`` makes: the token's HMAC where offered (auto), or RSA-PSS."""


def key_id_for(public: rsa.RSAPublicKey) -> str:
    """The key id of the token key with public key ``public``."""
    return f"{SCHEME}:{hashlib.sha256(_der(public)).hexdigest()[:32]}"


def _der(public: rsa.RSAPublicKey) -> bytes:
    return public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def seal_to(public: rsa.RSAPublicKey, iv: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """Seal to the token key ``public``: OAEP-wrapped data key || ciphertext || tag.

    Needs no token: only its public key.
    """
    data_key = secrets.token_bytes(DATA_KEY_LEN)
    return public.encrypt(data_key, _OAEP) + AESGCM(data_key).encrypt(iv, plaintext, aad)


def split_body(iv: bytes, body: bytes) -> tuple[bytes, bytes]:
    """Check lengths; return (wrapped data key, ciphertext || tag)."""
    if len(iv) != IV_LEN or len(body) < WRAPPED_LEN + TAG_LEN:
        raise _corrupt(f"is malformed (IV of {len(iv)} bytes, body of {len(body)} bytes)")
    return body[:WRAPPED_LEN], body[WRAPPED_LEN:]


def open_with_key(data_key: bytes, iv: bytes, ciphertext: bytes, aad: bytes) -> bytes:
    """AES-GCM on the host under the unwrapped ``data_key``; a mismatch -> ``RecordCorrupt``."""
    try:
        return AESGCM(data_key).decrypt(iv, ciphertext, aad)
    except InvalidTag:
        raise _corrupt(
            "failed authentication (its wrapped key, IV, ciphertext, tag or context does not match)"
        ) from None


def _corrupt(reason: str) -> RecordCorrupt:
    return RecordCorrupt(f"a sealed record {reason}; restore it from a backup or add it again")


@dataclass(frozen=True, slots=True)
class _PssAudit:
    """RSA-PSS over a host SHA-256 by a token key; verified on the host."""

    key: Any
    public: rsa.RSAPublicKey

    def mac(self, data: bytes) -> bytes:
        digest = hashlib.sha256(bytes(data)).digest()
        signature = SignMixin.sign(
            self.key, digest, mechanism=Mechanism.RSA_PKCS_PSS, mechanism_param=_PSS_PARAM
        )
        return SIGNATURE_PREFIX + cast(bytes, signature)

    def verify(self, data: bytes, tag: bytes) -> None:
        raw = bytes(tag).removeprefix(SIGNATURE_PREFIX)
        if len(raw) != WRAPPED_LEN or len(tag) != len(SIGNATURE_PREFIX) + WRAPPED_LEN:
            raise AuditTampered(_TAMPERED)
        try:
            self.public.verify(raw, bytes(data), _PSS, hashes.SHA256())
        except InvalidSignature:
            raise AuditTampered(_TAMPERED) from None

    def describe(self) -> str:
        return "RSA-PSS (SHA-256) signature by a second token key"


class RsaTokenKey(HostSealedKey):
    """A logged-in token holding an RSA-2048 key: the ``SealingKey`` of the token RSA-OAEP
    scheme. Build it with :meth:`open`."""

    scheme = SCHEME

    def __init__(self, opened: _Opened, key_label: str) -> None:
        """Internal: use :meth:`open`."""
        loaded = serialization.load_der_public_key(opened.public)
        if not isinstance(loaded, rsa.RSAPublicKey):
            raise TypeError("the token RSA-OAEP scheme needs an RSA public key")
        super().__init__(opened, key_id=key_id_for(loaded), key_label=key_label)
        self._public = loaded
        self._scratch: Session | None = None

    @classmethod
    def open(
        cls,
        module_path: str,
        token_label: str,
        key_label: str,
        pin: str | bytearray,
        *,
        create_key: bool = False,
        confirm_final_try: bool = False,
        audit: AuditMode = "auto",
        piv_slots: tuple[str, str] = ("82", "9a"),
        piv_setup: piv.PivSetup | None = None,
    ) -> RsaTokenKey:
        """Log in once, find (or with ``create_key`` generate) the RSA-2048 key and the audit key.

        As :meth:`EcdhTokenKey.open <vaultd.keys.ecdh.EcdhTokenKey.open>`, with RSA keys: the
        audit key is an HMAC key labelled ``<key_label>-audit`` where the token offers one, else
        an RSA-PSS signing key; on a PIV card the keys in ``piv_slots``, generated as RSA-2048
        as ``piv_setup`` says (touch policy, management key).
        """

        def find(token: Token, session: Session) -> tuple[Any, bytes, _Audit]:
            if piv.is_piv(token):
                private_key, public = _piv_key(session, piv_slots[0], "RSA-OAEP key")
                audit_key = _pss(*_piv_key(session, piv_slots[1], "audit signing key"))
            else:
                private_key, public = _find_rsa_key(session, key_label, create_key, "decrypt")
                hmac = wants_hmac(token, audit)
                audit_key = find_audit(session, f"{key_label}-audit", create_key, hmac, _signer)
            if create_key:
                _trial(private_key, public)
            return private_key, _der(public), audit_key

        opened = cls._open_parts(
            module_path,
            token_label,
            pin,
            confirm_final_try=confirm_final_try,
            create_key=create_key,
            piv_slots=piv_slots,
            piv_setup=piv_setup,
            kind="rsa",
            find=find,
        )
        return cls(opened, key_label)

    @property
    def public_key(self) -> rsa.RSAPublicKey:
        """The token key's RSA-2048 public key."""
        return self._public

    def encrypt(self, iv: bytes, plaintext: bytes, aad: bytes) -> bytes:
        """Seal to the token's public key on the host: wrapped data key || ciphertext || tag.

        Each record gets its own data key, so no AES key ever seals two records.
        """
        self._check_sealing(iv)
        return seal_to(self._public, bytes(iv), bytes(plaintext), bytes(aad))

    def decrypt(self, iv: bytes, body: bytes, aad: bytes) -> bytes:
        """One RSA-OAEP unwrap in the token, AES-GCM on the host; a mismatch: ``RecordCorrupt``."""
        wrapped, ciphertext = split_body(bytes(iv), bytes(body))
        if int.from_bytes(wrapped, "big") >= self._public.public_numbers().n:
            raise _not_unwrapped()  # ykcs11 reports such a value as a DeviceError
        with self._touch_watch(), self._use("unwrapping a record key") as st:
            try:
                data_key = _unwrap(st.private_key, wrapped)
            except RecordCorrupt:
                st.private_key = self._in_fresh_session(st.private_key)
                raise
            except pkerr.UserNotLoggedIn:
                if _still_logged_in(st):
                    raise HsmError(_NO_TOUCH) from None
                raise
        # immutable bytes cannot be wiped; the only reference dies with this call
        return open_with_key(data_key, bytes(iv), ciphertext, bytes(aad))

    def close(self) -> None:
        """Log out and close the session (seal), and any unwrap session."""
        super().close()
        if self._scratch is not None:
            _close_quietly(self._scratch)
            self._scratch = None

    def _in_fresh_session(self, private_key: Any) -> Any:
        """The vault key again, in a new session for the next unwraps.

        OpenSC 0.23 leaves a C_Decrypt that failed while sizing its output active in its
        session, so every later C_DecryptInit there is OperationActive. The new session shares
        the token's login; the one it replaces, if not the logged-in session, is closed (which
        logs nobody out).
        """
        fresh = self._token.open()
        query = {Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.ID: private_key[Attribute.ID]}
        found = list(fresh.get_objects(query))
        if len(found) != 1:
            _close_quietly(fresh)
            raise HsmError(
                "the token no longer shows the vault key after a refused unwrap; run `vaultd "
                "unlock`"
            )
        if self._scratch is not None:
            _close_quietly(self._scratch)
        self._scratch = fresh
        return found[0]


_NO_TOUCH: Final = (
    "the token refused the RSA decryption of a record open although the login holds, as a "
    "YubiKey does when its key wants a touch (touch policy always or cached) and none came in "
    "time; nothing was opened: touch the key when it blinks and retry"
)


def _still_logged_in(st: _Open) -> bool:
    """Whether the login holds: an audit tag (a key with no touch policy) is still made.

    ykcs11 reports a touch that never came, on an RSA decryption, as UserNotLoggedIn.
    """
    try:
        st.audit.mac(b"vaultd: is the login still there?")
    except pkerr.UserNotLoggedIn:
        return False
    return True


_NO_SHA256: Final = (
    "this module's RSA-OAEP refuses SHA-256 (SoftHSM2 2.6 takes SHA-1 only), so it cannot run "
    'the rsa-oaep scheme; set pkcs11.scheme = "aead" or "ecdh" if the token offers it'
)


def _unwrap(private_key: Any, wrapped: bytes) -> bytes:
    """C_Decrypt(CKM_RSA_PKCS_OAEP, SHA-256) in the token: the record's data key.

    A padding failure (a wrong key, a forged or PKCS#1 v1.5 wrapping) is the record's fault, not
    the token's: ``RecordCorrupt``. ykcs11 reports it as FunctionFailed (and a touch that never
    came as UserNotLoggedIn: :meth:`RsaTokenKey.decrypt`), OpenSC as EncryptedDataInvalid.
    """
    try:
        data_key = cast(
            bytes,
            DecryptMixin.decrypt(  # unbound: a PIV key may report CKA_DECRYPT=false
                private_key,
                wrapped,
                mechanism=Mechanism.RSA_PKCS_OAEP,
                mechanism_param=_OAEP_PARAM,
            ),
        )
    except (
        pkerr.EncryptedDataInvalid,
        pkerr.EncryptedDataLenRange,
        pkerr.FunctionFailed,
        pkerr.GeneralError,
    ):
        raise _not_unwrapped() from None
    except (pkerr.ArgumentsBad, pkerr.MechanismParamInvalid):
        raise HsmError(_NO_SHA256) from None
    if len(data_key) != DATA_KEY_LEN:
        raise _corrupt(f"carries a wrapped key of {len(data_key)} bytes, not {DATA_KEY_LEN}")
    return data_key


def _not_unwrapped() -> RecordCorrupt:
    return _corrupt("carries a wrapped key this token cannot unwrap (not RSA-OAEP to its key)")


def _trial(private_key: Any, public: rsa.RSAPublicKey) -> None:
    """``vaultd init``: seal to the key on the host and open in the token once."""
    iv, aad = secrets.token_bytes(IV_LEN), b"vaultd init trial"
    wrapped, ciphertext = split_body(iv, seal_to(public, iv, b"trial", aad))
    try:
        open_with_key(_unwrap(private_key, wrapped), iv, ciphertext, aad)
    except RecordCorrupt:
        raise HsmError(
            "the token's RSA-OAEP decryption does not match the host's encryption; this module "
            "cannot run the rsa-oaep scheme"
        ) from None


def _find_rsa_key(
    session: Session, label: str, create: bool, usage: Literal["decrypt", "sign"]
) -> tuple[Any, rsa.RSAPublicKey]:
    """The RSA private key labelled ``label`` (generated when absent and ``create``) and its
    public key, after checking its attributes (docs/threat-model.md T7)."""
    role = "RSA-OAEP key" if usage == "decrypt" else "audit signing key"
    found = list(
        session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.LABEL: label})
    )
    if len(found) > 1:
        raise _unsafe(
            role, label, f"is labelled on {len(found)} keys; remove the extras", "duplicate"
        )
    if found:
        private_key = found[0]
    elif create:
        private_key = _generate_rsa(session, label, usage)
    else:
        raise _unsafe(role, label, "is not in the token; run `vaultd init`", "missing")
    return _checked(session, private_key, label, role)


def _generate_rsa(session: Session, label: str, usage: Literal["decrypt", "sign"]) -> Any:
    private_template = {
        Attribute.TOKEN: True,
        Attribute.PRIVATE: True,
        Attribute.SENSITIVE: True,
        Attribute.EXTRACTABLE: False,
        Attribute.DECRYPT: usage == "decrypt",
        Attribute.SIGN: usage == "sign",
        Attribute.UNWRAP: False,
        Attribute.DERIVE: False,
    }
    _, private_key = session.generate_keypair(
        KeyType.RSA,
        MODULUS_BITS,
        store=True,
        id=session.generate_random(_ID_BYTES * 8),
        label=label,
        capabilities=MechanismFlag(0),
        public_template={Attribute.TOKEN: True, Attribute.PRIVATE: False},
        private_template=private_template,
    )
    return private_key


def _signer(session: Session, label: str, create: bool) -> _Audit:
    """The RSA-PSS audit signing key labelled ``label``."""
    return _pss(*_find_rsa_key(session, label, create, "sign"))


def _pss(private_key: Any, public: rsa.RSAPublicKey) -> _Audit:
    return _PssAudit(private_key, public)


def _piv_key(session: Session, slot: str, role: str) -> tuple[Any, rsa.RSAPublicKey]:
    label = f"PIV slot {slot}"
    query = {Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.ID: piv.cka_id(slot)}
    found = list(session.get_objects(query))
    if len(found) != 1:
        raise _unsafe(role, label, "holds no key this module shows; run `vaultd init`", "missing")
    return _checked(session, found[0], label, role)


def _checked(
    session: Session, private_key: _KeyObject, label: str, role: str
) -> tuple[Any, rsa.RSAPublicKey]:
    """The private key and its RSA-2048 public key (same CKA_ID), once its attributes pass."""
    check_key(private_key, label, role, "an RSA key", _is_rsa_key)
    return private_key, _public_key(session, private_key, label, role)


def _is_rsa_key(key: _KeyObject) -> bool:
    return bool(key[Attribute.KEY_TYPE] == KeyType.RSA)


def _public_key(
    session: Session, private_key: _KeyObject, label: str, role: str
) -> rsa.RSAPublicKey:
    query = {Attribute.CLASS: ObjectClass.PUBLIC_KEY, Attribute.ID: private_key[Attribute.ID]}
    found = list(session.get_objects(query))
    if len(found) != 1:
        raise _unsafe(
            role, label, f"has {len(found)} public keys with its CKA_ID, not 1", "public key"
        )
    modulus = int.from_bytes(bytes(found[0][Attribute.MODULUS]), "big")
    exponent = int.from_bytes(bytes(found[0][Attribute.PUBLIC_EXPONENT]), "big")
    if modulus.bit_length() != MODULUS_BITS:
        raise _unsafe(
            role, label, f"is RSA-{modulus.bit_length()}, not RSA-{MODULUS_BITS}", "MODULUS"
        )
    return rsa.RSAPublicNumbers(exponent, modulus).public_key()
