"""Token ECDH sealing: a P-256 key that never leaves the token, the KDF and AEAD on the host.

For tokens without AES-GCM inside (YubiKey PIV through ykcs11, OpenSC cards), records are
sealed as age-plugin-yubikey and piv-agent use PIV keys.  To seal, with no token call: an
ephemeral P-256 key pair on the host, ECDH with the token's public key (read once at open),
HKDF-SHA256 (salt = ephemeral point || token point; info = :data:`INFO`, the scheme version and
a SHA-256 of the record's AAD) and AES-256-GCM on the host.  The body is ephemeral point (65
bytes, uncompressed) || ciphertext || tag.  To open: one ``C_DeriveKey(CKM_ECDH1_DERIVE,
CKD_NULL)`` in the token per record (always CKD_NULL: OpenSC ignores the KDF parameter, ykcs11
and SoftHSM2 refuse others), the shared X coordinate read back as a session object that is
destroyed at once, then HKDF and AES-GCM on the host.  No derived key is ever kept: the
shared secret is in host memory for the moment of one open (docs/threat-model.md T5, T32).

The key id is ``ecdh-p256:`` and 32 hex chars of SHA-256 over the token's public point, so
records are bound to the key on the card, not to the module that reaches it, and the scheme
is inside every AAD and the store index (a downgrade to another scheme is refused).

The audit MAC is the token's HMAC where it offers one, else an ECDSA P-256 signature by a
second token key (:data:`SIGNATURE_PREFIX`), checked on the host with its public key.  The
store generation is anchored in a token data object where the token allows one; where it does
not (ykcs11), there is no anchor and :meth:`EcdhTokenKey.read_generation` returns ``None``.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Final, Literal, Protocol, cast

from asn1crypto.keys import ECDomainParameters  # type: ignore[import-untyped]
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pkcs11 import KDF, Attribute, KeyType, Mechanism, MechanismFlag, ObjectClass, Session, Token
from pkcs11 import exceptions as pkerr
from pkcs11._pkcs11 import DeriveMixin  # type: ignore[attr-defined]  # absent from its stub
from pkcs11.util.ec import encode_named_curve_parameters

from vaultd.errors import AuditTampered, ConfigError, HsmError, HsmKeyUnsafe, RecordCorrupt
from vaultd.keys import piv
from vaultd.keys.pkcs11 import (
    _MAC,
    IV_LEN,
    MAC_LEN,
    TAG_LEN,
    _close_quietly,
    _find_key,
    _find_token,
    _is_device_error,
    _TokenSession,
    _translated,
    anchor_generation,
    login_session,
    read_anchor,
)

if TYPE_CHECKING:
    from pkcs11._pkcs11 import lib as Pkcs11Lib
    from yubikit.piv import PivSession

SCHEME: Final = "ecdh-p256"
"""The scheme name; key ids of this scheme start with ``ecdh-p256:``."""
INFO: Final = b"vaultd/ecdh-p256/hkdf-sha256/aes-256-gcm/v1\x00"
POINT_LEN: Final = 65
"""An uncompressed P-256 point: 0x04 || X || Y."""
SIGNATURE_PREFIX: Final = b"ecdsa-p256:"
"""Audit tags that are ECDSA P-256 signatures (r || s, 64 bytes) start with this."""
_SIG_LEN: Final = 64
_SECRET_LEN: Final = 32
_ID_BYTES: Final = 16
_P256: Final = encode_named_curve_parameters("secp256r1")
_CURVE: Final = ec.SECP256R1()

AuditMode = Literal["auto", "hmac", "ecdsa"]
"""Which audit key ``vaultd init`` makes: the token's HMAC where offered (auto), or ECDSA."""


def key_id_for(point: bytes) -> str:
    """The key id of the token key with uncompressed public ``point``."""
    return f"{SCHEME}:{hashlib.sha256(point).hexdigest()[:32]}"


def record_key(secret: bytes, ephemeral: bytes, token_point: bytes, aad: bytes) -> bytes:
    """HKDF-SHA256 of the ECDH ``secret`` into the AES-256 key of one record."""
    info = INFO + hashlib.sha256(aad).digest()
    hkdf = HKDF(hashes.SHA256(), 32, salt=ephemeral + token_point, info=info)
    return hkdf.derive(secret)


def seal_to(token_point: bytes, iv: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """Seal to the token key with public ``token_point``: ephemeral point || ciphertext || tag.

    Needs no token: only its public point.
    """
    ephemeral_key = ec.generate_private_key(_CURVE)
    ephemeral = ephemeral_key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    peer = ec.EllipticCurvePublicKey.from_encoded_point(_CURVE, token_point)
    key = record_key(ephemeral_key.exchange(ec.ECDH(), peer), ephemeral, token_point, aad)
    return ephemeral + AESGCM(key).encrypt(iv, plaintext, aad)


def open_with_secret(
    secret: bytes, ephemeral: bytes, token_point: bytes, iv: bytes, ciphertext: bytes, aad: bytes
) -> bytes:
    """HKDF and AES-GCM on the host, given the ECDH ``secret``; a mismatch -> ``RecordCorrupt``."""
    key = record_key(secret, ephemeral, token_point, aad)
    try:
        return AESGCM(key).decrypt(iv, ciphertext, aad)
    except InvalidTag:
        raise _corrupt(
            "failed authentication (its ephemeral point, IV, ciphertext, tag or context does "
            "not match)"
        ) from None


def _corrupt(reason: str) -> RecordCorrupt:
    return RecordCorrupt(f"a sealed record {reason}; restore it from a backup or add it again")


def split_body(iv: bytes, body: bytes) -> tuple[bytes, bytes]:
    """Check lengths and the ephemeral point; return (point, ciphertext || tag)."""
    if len(iv) != IV_LEN or len(body) < POINT_LEN + TAG_LEN:
        raise _corrupt(f"is malformed (IV of {len(iv)} bytes, body of {len(body)} bytes)")
    ephemeral = body[:POINT_LEN]
    if ephemeral[0] != 4:
        raise _corrupt("carries an ephemeral point that is not uncompressed")
    try:
        ec.EllipticCurvePublicKey.from_encoded_point(_CURVE, ephemeral)
    except ValueError:
        raise _corrupt("carries an ephemeral point that is not on P-256") from None
    return ephemeral, body[POINT_LEN:]


class _KeyObject(Protocol):
    def __getitem__(self, key: Attribute) -> Any: ...


class _Audit(Protocol):
    def mac(self, data: bytes) -> bytes: ...

    def verify(self, data: bytes, tag: bytes) -> None: ...

    def describe(self) -> str: ...


_TAMPERED: Final = "an audit record's MAC does not match; the audit log was altered"


@dataclass(frozen=True, slots=True)
class _HmacAudit:
    """HMAC-SHA256 by a GENERIC_SECRET key in the token."""

    key: Any

    def mac(self, data: bytes) -> bytes:
        return cast(bytes, self.key.sign(bytes(data), mechanism=Mechanism.SHA256_HMAC))

    def verify(self, data: bytes, tag: bytes) -> None:
        if len(tag) != MAC_LEN or not self.key.verify(
            bytes(data), bytes(tag), mechanism=Mechanism.SHA256_HMAC
        ):
            raise AuditTampered(_TAMPERED)

    def describe(self) -> str:
        return "HMAC-SHA256 in the token"


@dataclass(frozen=True, slots=True)
class _EcdsaAudit:
    """ECDSA P-256 over a host SHA-256 by a token key; verified on the host."""

    key: Any
    public: ec.EllipticCurvePublicKey

    def mac(self, data: bytes) -> bytes:
        digest = hashlib.sha256(bytes(data)).digest()
        signature = cast(bytes, self.key.sign(digest, mechanism=Mechanism.ECDSA))
        return SIGNATURE_PREFIX + signature

    def verify(self, data: bytes, tag: bytes) -> None:
        raw = bytes(tag).removeprefix(SIGNATURE_PREFIX)
        if len(raw) != _SIG_LEN or len(tag) != len(SIGNATURE_PREFIX) + _SIG_LEN:
            raise AuditTampered(_TAMPERED)
        der = encode_dss_signature(int.from_bytes(raw[:32]), int.from_bytes(raw[32:]))
        try:
            self.public.verify(der, bytes(data), ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise AuditTampered(_TAMPERED) from None

    def describe(self) -> str:
        return "ECDSA P-256 signature by a second token key"


@dataclass(slots=True)
class _Open:
    session: Session
    private_key: Any
    audit: _Audit
    anchored: bool


_Find = Callable[[Token, Session], tuple[Any, bytes, _Audit]]
"""Finds (or makes) a scheme's vault key and audit key: (private key, public key bytes, audit)."""


@dataclass(frozen=True, slots=True)
class _Opened:
    """What an ``open`` found: the login, the vault key's public key and any PIV facts."""

    lib: Pkcs11Lib
    token: Token
    state: _Open
    public: bytes
    piv_slot: str | None
    """The vault key's PIV slot on a PIV card, else None."""
    notes: list[str]


class HostSealedKey(_TokenSession[_Open]):
    """What the schemes that seal on the host with a token's public key share (token ECDH, token
    RSA-OAEP): the PIV key generation, host randomness, the audit tag, the generation anchor,
    the facts for doctor.

    Any device failure closes it; after :meth:`close` or such a failure every call raises
    :class:`Sealed`.
    """

    scheme: ClassVar[str]
    """The scheme's name, the prefix of its key ids."""

    def __init__(self, opened: _Opened, *, key_id: str, key_label: str) -> None:
        """Internal: use the subclass's ``open``."""
        super().__init__(opened.state)
        self._lib = opened.lib
        self._token = opened.token
        self._key_label = key_label if opened.piv_slot is None else f"PIV slot {opened.piv_slot}"
        self._key_id = key_id
        self.piv_slot = opened.piv_slot
        """The vault key's PIV slot on a PIV card."""
        self.notes = opened.notes
        """What ``open`` did to a PIV card, and any warning about it, one line each."""
        self.touch_possible = opened.piv_slot is not None
        """Whether an open may wait for a touch: a PIV key's touch policy is not readable
        through PKCS#11, so any PIV key may."""

    @staticmethod
    def _open_parts(
        module_path: str,
        token_label: str,
        pin: str | bytearray,
        *,
        confirm_final_try: bool,
        create_key: bool,
        piv_slots: tuple[str, str],
        piv_setup: piv.PivSetup | None,
        kind: piv.KeyKind,
        find: _Find,
    ) -> _Opened:
        """With ``create_key``, make the missing ``kind`` keys of a PIV card as ``piv_setup``
        says; then log in once, ``find`` the keys and probe the anchor (the session closed on
        failure)."""

        def check_pin() -> str:
            args = (module_path, token_label, pin)
            login = login_session(*args, confirm_final_try=confirm_final_try)
            _close_quietly(login[2])
            return pin if isinstance(pin, str) else pin.decode()

        setup = piv_setup or piv.PivSetup()
        notes = []
        if create_key:
            notes = _generate_piv(module_path, token_label, piv_slots, setup, kind, check_pin)
        lib, token, session = login_session(
            module_path, token_label, pin, confirm_final_try=confirm_final_try
        )
        try:
            with _translated("checking the keys"):
                private_key, public, audit_key = find(token, session)
                anchored = _probe_anchor(session)
        except BaseException:
            _close_quietly(session)
            raise
        state = _Open(session, private_key, audit_key, anchored)
        piv_slot = piv_slots[0] if piv.is_piv(token) else None
        return _Opened(lib, token, state, public, piv_slot, notes)

    def piv_policy(self) -> tuple[str, str] | None:
        """The PIV vault key's PIN and touch policy (GET METADATA through yubikit), lower case;
        None off a PIV card, without yubikit, or on firmware before 5.3.

        A second PC/SC connection selects the applet again, which may drop the module's PIN
        state on a real card: call it after the last token operation (``vaultd doctor``)."""
        if self.piv_slot is None:
            return None
        return piv.slot_policy(self._token.slot.slot_description, self.piv_slot)

    def card_access(self) -> piv.CardAccess | None:
        """Whether the PIV card's PIN, PUK and management key are the factory defaults; None
        off a PIV card, without yubikit, or on firmware before 5.3 (call it last, as
        :meth:`piv_policy`)."""
        if self.piv_slot is None:
            return None
        return piv.card_access(self._token.slot.slot_description)

    @property
    def key_id(self) -> str:
        """The scheme's name and 32 hex chars of SHA-256 over the token's public key."""
        return self._key_id

    def _check_sealing(self, iv: bytes) -> None:
        """Refuse a wrong IV, and sealing once closed (as the token AEAD scheme does)."""
        if len(iv) != IV_LEN:
            raise ValueError(f"the AES-GCM IV must be {IV_LEN} bytes, got {len(iv)}")
        with self._use("sealing"):
            pass

    def random(self, n: int) -> bytes:
        """``n`` random bytes from the host (sealing needs no token call)."""
        if n < 0:
            raise ValueError("n must not be negative")
        return secrets.token_bytes(n)

    def mac(self, data: bytes) -> bytes:
        """The audit tag of ``data``: HMAC-SHA256 (32 bytes) or a prefixed signature."""
        with self._use("computing an audit MAC") as st:
            return st.audit.mac(data)

    def mac_verify(self, data: bytes, tag: bytes) -> None:
        """Check an audit tag; raise :class:`AuditTampered` on a mismatch."""
        with self._use("verifying an audit MAC") as st:
            st.audit.verify(data, tag)

    def read_generation(self) -> int | None:
        """The anchored store generation, or ``None`` when this token holds no anchor."""
        with self._use("reading the store generation") as st:
            return read_anchor(st.session) if st.anchored else None

    def advance_generation(self, value: int) -> None:
        """Anchor ``value`` in the token; a no-op on a token that holds no anchor."""
        with self._use("advancing the store generation") as st:
            if st.anchored:
                anchor_generation(st.session, value)

    def inspect(self) -> dict[str, object]:
        """Non-secret facts for ``vaultd doctor``."""
        with self._use("inspecting the token") as st:
            return {
                "scheme": self.scheme,
                "module": self._lib.library_description,
                "token_label": self._token.label,
                "token_serial": self._token.serial.decode("ascii", "replace"),
                "token_model": self._token.model,
                "key_label": self._key_label,
                "key_id": self._key_id,
                "key_attributes": {a.name: st.private_key[a] for a in KEY_POLICY},
                "audit": st.audit.describe(),
                "rollback_protection": st.anchored,
            }


class EcdhTokenKey(HostSealedKey):
    """A logged-in token holding a P-256 key: the ``SealingKey`` of the token ECDH scheme.

    Build it with :meth:`open`.
    """

    scheme = SCHEME

    def __init__(self, opened: _Opened, key_label: str) -> None:
        """Internal: use :meth:`open`."""
        super().__init__(opened, key_id=key_id_for(opened.public), key_label=key_label)
        self._point = opened.public

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
    ) -> EcdhTokenKey:
        """Log in once, find (or with ``create_key`` generate) the P-256 key and the audit key.

        The PIN handling and errors are those of :meth:`TokenKey.open
        <vaultd.keys.pkcs11.TokenKey.open>`. The audit key is an HMAC key if one is labelled
        ``<key_label>-audit``, else an EC key of that label; ``create_key`` makes the HMAC key
        where the token offers SHA256_HMAC (``audit="auto"``), else an ECDSA key.

        On a PIV card (:mod:`vaultd.keys.piv`) the keys are those in ``piv_slots`` (vault,
        audit), found by CKA_ID; ``create_key`` generates a missing one as ``piv_setup`` says
        (:class:`~vaultd.keys.piv.PivSetup`), recorded in :attr:`notes`.
        """

        def find(token: Token, session: Session) -> tuple[Any, bytes, _Audit]:
            if piv.is_piv(token):
                private_key, point, audit_key = _find_piv_keys(session, piv_slots)
            else:
                private_key, point = _find_ec_key(session, key_label, create_key, "derive")
                hmac = wants_hmac(token, audit)
                audit_key = find_audit(session, f"{key_label}-audit", create_key, hmac, _ecdsa)
            if create_key:
                _trial(private_key, point)
            return private_key, point, audit_key

        opened = cls._open_parts(
            module_path,
            token_label,
            pin,
            confirm_final_try=confirm_final_try,
            create_key=create_key,
            piv_slots=piv_slots,
            piv_setup=piv_setup,
            kind="ec",
            find=find,
        )
        return cls(opened, key_label)

    @property
    def public_point(self) -> bytes:
        """The token key's uncompressed public point (65 bytes)."""
        return self._point

    def encrypt(self, iv: bytes, plaintext: bytes, aad: bytes) -> bytes:
        """Seal to the token's public key on the host: ephemeral point || ciphertext || tag.

        Each record gets its own ephemeral key, so no AES key ever seals two records.
        """
        self._check_sealing(iv)
        return seal_to(self._point, bytes(iv), bytes(plaintext), bytes(aad))

    def decrypt(self, iv: bytes, body: bytes, aad: bytes) -> bytes:
        """One ECDH in the token, HKDF and AES-GCM on the host; a mismatch -> ``RecordCorrupt``."""
        ephemeral, ciphertext = split_body(bytes(iv), bytes(body))
        with self._touch_watch(), self._use("deriving a record key") as st:
            secret = _derive(st.private_key, ephemeral)
        # immutable bytes cannot be wiped; the only reference dies with this call
        return open_with_secret(secret, ephemeral, self._point, bytes(iv), ciphertext, bytes(aad))


KEY_POLICY: Final = (
    Attribute.TOKEN,
    Attribute.PRIVATE,
    Attribute.SENSITIVE,
    Attribute.EXTRACTABLE,
    Attribute.ALWAYS_SENSITIVE,
    Attribute.NEVER_EXTRACTABLE,
)
KEY_EXPECTED: Final = (True, True, True, False, True, True)
"""What every vault and audit private key must say: in the token, private, never extractable."""


_NO_TOUCH: Final = (
    "the token refused the ECDH of a record open (FunctionFailed), as a YubiKey does when its key "
    "wants a touch (touch policy always or cached) and none came in time; nothing was opened: "
    "touch the key when it blinks and retry"
)


def _derive(private_key: Any, ephemeral: bytes) -> bytes:
    """ECDH with CKD_NULL in the token; the shared X coordinate, its session object destroyed.

    ykcs11 reports CKA_DERIVE=false, so python-pkcs11 attaches no ``derive_key``: call the
    mixin's method directly. A touch that never comes is ykcs11's FunctionFailed (card 69 82).
    """
    try:
        derived = DeriveMixin.derive_key(
            private_key,
            KeyType.GENERIC_SECRET,
            _SECRET_LEN * 8,
            store=False,
            capabilities=MechanismFlag(0),
            mechanism=Mechanism.ECDH1_DERIVE,
            mechanism_param=(KDF.NULL, None, ephemeral),
            template={
                Attribute.TOKEN: False,
                Attribute.SENSITIVE: False,
                Attribute.EXTRACTABLE: True,
            },
        )
    except pkerr.FunctionFailed:
        raise HsmError(_NO_TOUCH) from None
    try:
        secret = bytes(derived[Attribute.VALUE])
    finally:
        derived.destroy()
    if len(secret) != _SECRET_LEN:
        raise HsmError(
            f"the token's ECDH returned {len(secret)} bytes, not {_SECRET_LEN}; this module "
            'cannot run the ecdh scheme (set pkcs11.scheme = "aead" if the token offers it)'
        )
    return secret


def _trial(private_key: Any, point: bytes) -> None:
    """``vaultd init``: seal to the key on the host and open in the token once."""
    iv, aad = secrets.token_bytes(IV_LEN), b"vaultd init trial"
    ephemeral, ciphertext = split_body(iv, seal_to(point, iv, b"trial", aad))
    key = record_key(_derive(private_key, ephemeral), ephemeral, point, aad)
    try:
        AESGCM(key).decrypt(iv, ciphertext, aad)
    except InvalidTag:
        raise HsmError(
            "the token's ECDH result does not match the host's; this module cannot run the "
            "ecdh scheme"
        ) from None


def _unsafe(role: str, label: str, what: str, attribute: str) -> HsmKeyUnsafe:
    return HsmKeyUnsafe(f"the {role} {label!r} {what}", attribute=attribute)


def _find_ec_key(
    session: Session, label: str, create: bool, usage: Literal["derive", "sign"]
) -> tuple[Any, bytes]:
    """The P-256 private key labelled ``label`` (generated when absent and ``create``) and its
    public point, after checking its attributes (docs/threat-model.md T7)."""
    role = "ECDH key" if usage == "derive" else "audit signing key"
    query = {Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.LABEL: label}
    found = list(session.get_objects(query))
    if len(found) > 1:
        raise _unsafe(
            role, label, f"is labelled on {len(found)} keys; remove the extras", "duplicate"
        )
    if found:
        private_key = found[0]
    elif create:
        private_key = _generate_ec(session, label, usage)
    else:
        raise _unsafe(role, label, "is not in the token; run `vaultd init`", "missing")
    _check_ec(private_key, label, role)
    return private_key, _public_point(session, private_key, label, role)


def _generate_ec(session: Session, label: str, usage: Literal["derive", "sign"]) -> Any:
    params = session.create_domain_parameters(KeyType.EC, {Attribute.EC_PARAMS: _P256}, local=True)
    private_template = {
        Attribute.TOKEN: True,
        Attribute.PRIVATE: True,
        Attribute.SENSITIVE: True,
        Attribute.EXTRACTABLE: False,
        Attribute.DERIVE: usage == "derive",
        Attribute.SIGN: usage == "sign",
        Attribute.DECRYPT: False,
        Attribute.UNWRAP: False,
    }
    _, private_key = params.generate_keypair(
        store=True,
        id=session.generate_random(_ID_BYTES * 8),
        label=label,
        capabilities=MechanismFlag(0),
        public_template={Attribute.TOKEN: True, Attribute.PRIVATE: False},
        private_template=private_template,
    )
    return private_key


def check_key(
    key: _KeyObject, label: str, role: str, what: str, is_kind: Callable[[_KeyObject], bool]
) -> None:
    """Refuse a private key that is not ``what`` (``is_kind``) or breaks :data:`KEY_POLICY`
    (extractable, not sensitive, ...), or whose attributes cannot be read."""
    try:
        if not is_kind(key):
            where = "slot" if label.startswith("PIV slot ") else "label"
            raise _unsafe(
                role,
                label,
                f"is not {what}; vaultd never replaces a key: name a {where} that is empty or "
                f"holds {what}",
                "KEY_TYPE",
            )
        for attr, expected in zip(KEY_POLICY, KEY_EXPECTED, strict=True):
            if key[attr] != expected:
                raise _unsafe(
                    role,
                    label,
                    f"has {attr.name}={key[attr]}, expected {expected}; generate a new key "
                    "with `vaultd init`",
                    attr.name,
                )
    except (pkerr.AttributeTypeInvalid, pkerr.AttributeSensitive) as exc:
        raise _unsafe(role, label, "cannot be checked, so it is refused", "unreadable") from exc


def _check_ec(key: _KeyObject, label: str, role: str) -> None:
    check_key(key, label, role, "a P-256 key", _is_p256_key)


def _is_p256_key(key: _KeyObject) -> bool:
    return bool(key[Attribute.KEY_TYPE] == KeyType.EC and _is_p256(bytes(key[Attribute.EC_PARAMS])))


_P256_SPECIFIED: Final = (
    2**256 - 2**224 + 2**192 + 2**96 - 1,
    bytes.fromhex("5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604b"),
    bytes.fromhex(
        "046b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296"
        "4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5"
    ),
    0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
)
"""P-256's prime, b, generator and order, as explicit parameters state them."""


def _is_p256(params: bytes) -> bool:
    """Whether CKA_EC_PARAMS names P-256: its OID, or (ykcs11) its explicit parameters."""
    if params == _P256:
        return True
    try:
        domain = ECDomainParameters.load(params)
        if domain.name != "specified":
            return False
        spec = domain.chosen.native
        found = (spec["field_id"]["parameters"], spec["curve"]["b"], spec["base"], spec["order"])
    except (ValueError, TypeError, KeyError):
        return False
    return found == _P256_SPECIFIED


def _public_point(session: Session, private_key: _KeyObject, label: str, role: str) -> bytes:
    """The uncompressed point of the public key with the private key's CKA_ID."""
    query = {Attribute.CLASS: ObjectClass.PUBLIC_KEY, Attribute.ID: private_key[Attribute.ID]}
    found = list(session.get_objects(query))
    if len(found) != 1:
        raise _unsafe(
            role, label, f"has {len(found)} public keys with its CKA_ID, not 1", "public key"
        )
    raw = bytes(found[0][Attribute.EC_POINT])
    # Modules return the DER OCTET STRING (04 41 04 ...) or, some, the bare point.
    point = raw[2:] if len(raw) == POINT_LEN + 2 and raw[:2] == b"\x04\x41" else raw
    try:
        ec.EllipticCurvePublicKey.from_encoded_point(_CURVE, point)
    except ValueError:
        raise _unsafe(role, label, "has a public point that is not on P-256", "EC_POINT") from None
    if len(point) != POINT_LEN:
        raise _unsafe(role, label, "has a compressed public point", "EC_POINT")
    return point


def wants_hmac(token: Token, mode: str) -> bool:
    """Whether the audit key is an HMAC key: ``mode`` is ``hmac``, or ``auto`` on a token that
    offers SHA256_HMAC (else a signature by a second token key)."""
    if mode != "auto":
        return mode == "hmac"
    wanted = {Mechanism.SHA256_HMAC, Mechanism.GENERIC_SECRET_KEY_GEN}
    return wanted <= set(token.slot.get_mechanisms())


def _generate_piv(
    module_path: str,
    token_label: str,
    slots: tuple[str, str],
    setup: piv.PivSetup,
    kind: piv.KeyKind,
    check_pin: Callable[[], str],
) -> list[str]:
    """On a PIV card, protect the management key if asked and generate ``kind`` keys in the
    slots of ``slots`` that hold none, with their policies; what was done, in words.
    ``check_pin`` logs in once through the module (its PIN guards apply) and returns the PIN,
    before yubikit is handed it."""
    import pkcs11

    with _translated("generating the PIV keys"):
        lib = pkcs11.lib(module_path)
        token = _find_token(lib, token_label, module_path)
        if not piv.is_piv(token):
            if setup.protect:
                raise piv.not_a_card(token_label)
            return []
        reader = token.slot.slot_description
        absent = piv.missing_slots(token, slots)
        if not absent and not setup.protect:
            return []
        touch: dict[str, piv.TouchPolicy] = {slots[0]: setup.touch_policy, slots[1]: "never"}
        missing = {slot: touch[slot] for slot in absent}
        if piv.yubikit_installed():
            pin = check_pin()
            with piv.yubikit_session(reader) as session:
                notes = (
                    None if session is None else _yubikit_notes(session, setup, pin, missing, kind)
                )
            if notes is not None:
                lib.reinitialize()  # ykcs11 reads the card's keys again at the next login
                return notes
        return _ykcs11_notes(lib, token_label, reader, setup, missing, kind)


_DEFAULT_KEY_WARNING: Final = (
    "WARNING: the card still has the factory default management key, which anyone can use to "
    "replace its keys: run `vaultd init --protect-management-key` (or change it with `ykman "
    "piv access change-management-key --protect`)"
)


def _yubikit_notes(
    session: PivSession,
    setup: piv.PivSetup,
    pin: str,
    missing: dict[str, piv.TouchPolicy],
    kind: piv.KeyKind,
) -> list[str]:
    """Through yubikit: the management key protected if asked, the policies set per slot."""
    key = piv.prepare_card(session, setup, pin, missing, kind)
    notes = [
        f"generated {piv.KIND_WORDS[kind]} in PIV slot {slot} (PIN once, touch {touch})"
        for slot, touch in missing.items()
    ]
    if setup.protect:
        notes.append(
            "the management key is now a random 3DES key stored PIN-protected on the card; the "
            "factory default no longer works"
        )
    elif key == piv.DEFAULT_MANAGEMENT_KEY and missing:
        notes.append(_DEFAULT_KEY_WARNING)
    return notes


def _ykcs11_notes(
    lib: Pkcs11Lib,
    token_label: str,
    reader: str,
    setup: piv.PivSetup,
    missing: dict[str, piv.TouchPolicy],
    kind: piv.KeyKind,
) -> list[str]:
    """Without yubikit (or its reader) ykcs11 generates, and the card picks the policies."""
    if setup.protect or setup.touch_policy != "cached":
        asked = (
            "--protect-management-key"
            if setup.protect
            else f"touch_policy = {setup.touch_policy!r}"
        )
        raise ConfigError(
            f"{asked} needs yubikit (ykcs11 cannot set it) and the card in PC/SC reader "
            f"{reader!r}: pip install 'vaultd[yubikey]'"
        )
    key = setup.management_key or piv.DEFAULT_MANAGEMENT_KEY
    piv.generate(lib, token_label, list(missing), key, kind)
    words = piv.KIND_WORDS[kind]
    notes = [f"generated {words} in PIV slot {slot} (the card's policies)" for slot in missing]
    if setup.management_key is None:
        notes.append(_DEFAULT_KEY_WARNING)
    if not piv.count_retired_keys(reader, list(missing), key):
        notes.append(
            "WARNING: yubikit is not installed (pip install 'vaultd[yubikey]'), so the card "
            "chose the PIN and touch policy (a YubiKey: touch never) and its Key History "
            "object was not written: OpenSC will not list the retired slot"
        )
    return notes


def _find_piv_keys(session: Session, slots: tuple[str, str]) -> tuple[Any, bytes, _Audit]:
    """The vault key (derive) and the audit key (sign) of a PIV card, by their slots' CKA_IDs."""
    vault_key, point = _piv_key(session, slots[0], "ECDH key")
    audit_key, audit_point = _piv_key(session, slots[1], "audit signing key")
    public = ec.EllipticCurvePublicKey.from_encoded_point(_CURVE, audit_point)
    return vault_key, point, _EcdsaAudit(audit_key, public)


def _piv_key(session: Session, slot: str, role: str) -> tuple[Any, bytes]:
    label = f"PIV slot {slot}"
    query = {Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.ID: piv.cka_id(slot)}
    found = list(session.get_objects(query))
    if len(found) != 1:
        raise _unsafe(role, label, "holds no key this module shows; run `vaultd init`", "missing")
    _check_ec(found[0], label, role)
    return found[0], _public_point(session, found[0], label, role)


def find_audit(
    session: Session,
    label: str,
    create: bool,
    hmac: bool,
    find_signer: Callable[[Session, str, bool], _Audit],
) -> _Audit:
    """The audit key labelled ``label``: an HMAC key or a signing key (``find_signer``), never
    both; ``create`` makes the HMAC key when ``hmac``, else the signing key."""
    secret = list(
        session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.LABEL: label})
    )
    pair = list(
        session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.LABEL: label})
    )
    if secret and pair:
        raise _unsafe(
            "audit key", label, "is both an HMAC key and a signing key; remove one", "duplicate"
        )
    if secret or (not pair and create and hmac):
        return _HmacAudit(_find_key(session, label, _MAC, create))
    return find_signer(session, label, create)


def _ecdsa(session: Session, label: str, create: bool) -> _Audit:
    """The P-256 audit signing key labelled ``label``."""
    private_key, point = _find_ec_key(session, label, create, "sign")
    return _EcdsaAudit(private_key, ec.EllipticCurvePublicKey.from_encoded_point(_CURVE, point))


def _probe_anchor(session: Session) -> bool:
    """Whether the token keeps data objects: an anchor is there, or a trial one is accepted.

    A module that refuses data objects (ykcs11) leaves the store without rollback protection.
    """
    if read_anchor(session) > 0:
        return True
    try:
        trial = session.create_object(
            {
                Attribute.CLASS: ObjectClass.DATA,
                Attribute.TOKEN: True,
                Attribute.PRIVATE: True,
                Attribute.LABEL: "vaultd-probe",
                Attribute.APPLICATION: "vaultd",
                Attribute.VALUE: b"\x00",
            }
        )
    except pkerr.PKCS11Error as exc:
        if _is_device_error(exc) and not isinstance(exc, pkerr.GeneralError):
            raise
        return False
    trial.destroy()
    return True
