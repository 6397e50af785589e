"""PIV cards through a PKCS#11 module: keys found by slot, generated with the management key.

A PIV module (Yubico's ykcs11, OpenSC's PIV driver) names no key after vaultd: its objects are
the card's slots, with labels of the module's choosing ("Private key for Retired Key 1" in
ykcs11, "Retired KEY MAN 1" in OpenSC) but the same CKA_ID in both: 1 = 9a, 2 = 9c, 3 = 9d,
4 = 9e and 5..24 = the retired slots 82..95.  So vaultd finds the vault key and the audit key by
the CKA_ID of ``pkcs11.piv_slot`` and ``pkcs11.piv_audit_slot``, whichever module reaches the
card.  The audit key defaults to 9a because OpenSC offers retired EC keys for derive only.

Keys are P-256 (token ECDH) or RSA-2048 (token RSA-OAEP), per :data:`KeyKind`.  ykcs11
generates a key at SO login (:func:`generate`), whose PIN is the management key in hex; it
refuses SO login while any read-only session is open in the process, so the module is
reinitialised around it.
Debian's ykcs11 2.2 sends no PIN or touch policy (CKA_YUBICO_* are unknown to it), so with
yubikit (the ``yubikey`` extra) :func:`prepare_card` makes the keys over PC/SC instead:
PIN policy once, and the vault key's touch policy from ``pkcs11.touch_policy``.

:func:`protect_management_key` replaces a factory default management key with a random 3DES key
kept PIN-protected on the card, as ``ykman piv access change-management-key --protect`` does
(3DES because ykcs11 2.2 speaks no other at SO login); :func:`management_key` reads it back.

ykcs11 writes a certificate with each key it generates, but OpenSC lists a retired slot only
when the Key History object (5FC10C) counts it, and no PKCS#11 module writes that object: with
yubikit (the ``yubikey`` extra) :func:`count_retired_keys` writes it with the management key.
"""

from __future__ import annotations

import datetime
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal

from cryptography import x509
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass, Session, Token
from pkcs11 import exceptions as pkerr
from pkcs11.util.ec import encode_named_curve_parameters

from vaultd.errors import BadRequest, ConfigError, HsmError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
    from pkcs11._pkcs11 import lib as Pkcs11Lib
    from ykman.piv import PivmanData, PivmanProtectedData
    from yubikit.piv import PivSession

TouchPolicy = Literal["always", "cached", "never"]
KeyKind = Literal["ec", "rsa"]
"""A PIV key vaultd generates: P-256 (token ECDH) or RSA-2048 (token RSA-OAEP)."""
KIND_WORDS: Final = {"ec": "a P-256 key", "rsa": "an RSA-2048 key"}

DEFAULT_MANAGEMENT_KEY: Final = bytes.fromhex("010203040506070801020304050607080102030405060708")
"""The factory default PIV management key (3DES): anyone may use it, change it."""
RSA_BITS: Final = 2048
"""The RSA modulus size of the token RSA-OAEP scheme's keys."""
_NAMED: Final = {"9a": 1, "9c": 2, "9d": 3, "9e": 4}
SLOTS: Final = (*_NAMED, *(f"{n:02x}" for n in range(0x82, 0x96)))
"""The PIV key slots vaultd may use, as ``ykman`` names them."""
_PIV_MANUFACTURERS: Final = ("Yubico", "piv_II")
"""Token manufacturer ids of ykcs11 and of OpenSC's PIV driver."""
_INSTALL: Final = "pip install 'vaultd[yubikey]'"
_REFUSED: Final = (
    "the card refused the management key; run the command again with --management-key-stdin "
    "and the right one (hex) on stdin"
)


@dataclass(frozen=True, slots=True)
class PivSetup:
    """How ``vaultd init`` makes missing keys on a PIV card."""

    management_key: bytes | None = None
    """The key given on stdin; None: the one stored PIN-protected on the card, else the
    factory default."""
    touch_policy: TouchPolicy = "cached"
    """The vault key's touch policy (the audit key's is always never)."""
    protect: bool = False
    """Replace a factory default management key with a random one stored on the card first."""


def not_a_card(token_label: str) -> ConfigError:
    """The refusal of ``--protect-management-key`` on a token that is no PIV card."""
    return ConfigError(
        f"--protect-management-key is for PIV cards (a YubiKey), and token {token_label!r} is "
        "not one"
    )


def check_slot(slot: str, option: str) -> str:
    """``slot`` when it names a key slot of :data:`SLOTS`; else ``BadRequest`` naming
    ``option``."""
    if slot not in SLOTS:
        raise BadRequest(
            f"{option} {slot[:8]!r} is not a PIV key slot vaultd uses: name one of 9a, 9c, 9d, "
            "9e or 82 to 95 (nothing was done)"
        )
    return slot


def is_piv(token: Token) -> bool:
    """Whether ``token`` is a PIV card seen through ykcs11 or OpenSC's PIV driver."""
    return token.manufacturer_id.startswith(_PIV_MANUFACTURERS)


def cka_id(slot: str) -> bytes:
    """The CKA_ID both modules give the key in PIV ``slot`` (``"82"`` -> ``b"\\x05"``)."""
    number = _NAMED.get(slot) or int(slot, 16) - 0x82 + 5
    return bytes([number])


def missing_slots(token: Token, slots: tuple[str, ...]) -> list[str]:
    """The slots among ``slots`` that hold no public key (read without logging in)."""
    with token.open() as session:
        present = {
            bytes(obj[Attribute.ID])
            for obj in session.get_objects({Attribute.CLASS: ObjectClass.PUBLIC_KEY})
        }
    return [slot for slot in slots if cka_id(slot) not in present]


def generate(
    lib: Pkcs11Lib,
    token_label: str,
    slots: list[str],
    management_key: bytes,
    kind: KeyKind,
) -> None:
    """Generate a ``kind`` key in each of ``slots`` through the module (the card picks the
    policies), logged in as SO with ``management_key``.

    Reinitialises the module before (SO login refuses while a read-only session is open) and
    after (so the next user login starts clean).
    """
    lib.reinitialize()
    token = lib.get_token(token_label=token_label)
    mechanism = Mechanism.EC_KEY_PAIR_GEN if kind == "ec" else Mechanism.RSA_PKCS_KEY_PAIR_GEN
    if mechanism not in set(token.slot.get_mechanisms()):
        raise HsmError(
            f"PIV slot(s) {', '.join(slots)} of token {token_label!r} hold no key and this module "
            "cannot generate one; run `vaultd init` once with Yubico's ykcs11 as pkcs11.module"
        )
    try:
        so = token.open(rw=True, so_pin=management_key.hex())
    except pkerr.PinIncorrect:
        raise HsmError(_REFUSED) from None
    with so:
        for slot in slots:
            _generate_as_so(so, slot, kind)
    lib.reinitialize()


def _generate_as_so(so: Session, slot: str, kind: KeyKind) -> None:
    """A ``kind`` key pair in ``slot`` through the module's SO session (C_GenerateKeyPair)."""
    ids = {Attribute.ID: cka_id(slot)}
    if kind == "rsa":
        so.generate_keypair(
            KeyType.RSA, RSA_BITS, public_template=ids, private_template=ids, store=True
        )
        return
    params = {Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")}
    so.generate_keypair(
        KeyType.EC, public_template={**params, **ids}, private_template=ids, store=True
    )


def _retired_index(slot: str) -> int:
    """1 for slot 82 .. 20 for slot 95; 0 for 9a, 9c, 9d, 9e."""
    return 0 if slot in _NAMED else int(slot, 16) - 0x81


def count_retired_keys(reader: str, slots: list[str], management_key: bytes) -> bool:
    """Make the Key History object of the card in ``reader`` count the retired ``slots``.

    Keeps a larger count already there. False when yubikit (the ``yubikey`` extra) is not
    installed or no PC/SC reader has that name; OpenSC then does not list those slots.
    """
    with yubikit_session(reader) as session:
        if session is None:
            return False
        _count_retired(session, slots, management_key)
    return True


def _count_retired(session: PivSession, slots: list[str], management_key: bytes) -> None:
    from yubikit.core import Tlv
    from yubikit.core.smartcard import ApduError
    from yubikit.piv import OBJECT_ID

    needed = max(map(_retired_index, slots), default=0)
    if not needed:
        return
    try:
        counted = Tlv.parse_dict(session.get_object(OBJECT_ID.KEY_HISTORY)).get(0xC1, b"\0")
    except ApduError:  # no such object yet
        counted = b"\0"
    if counted[0] < needed:
        _authenticate(session, management_key)
        history = Tlv(0xC1, bytes([needed])) + Tlv(0xC2, b"\0") + Tlv(0xFE, b"")
        session.put_object(OBJECT_ID.KEY_HISTORY, history)


def _authenticate(session: PivSession, management_key: bytes) -> None:
    from yubikit.core import CommandError

    try:
        session.authenticate(management_key)
    except CommandError:
        raise HsmError(_REFUSED) from None


def yubikit_installed() -> bool:
    """Whether yubikit and pyscard (the ``yubikey`` extra) can be imported."""
    try:
        import smartcard  # type: ignore[import-untyped]  # noqa: F401
        import ykman.piv  # noqa: F401
    except ImportError:
        return False
    return True


def prepare_card(
    session: PivSession,
    setup: PivSetup,
    pin: str,
    missing: dict[str, TouchPolicy],
    kind: KeyKind,
) -> bytes:
    """Protect the management key if asked, then generate the ``missing`` slots (``kind``, PIN
    once, the given touch policy each) and count them in Key History; the management key used.
    ``pin`` must be known good: a wrong one here would spend a try unchecked."""
    from yubikit.core import CommandError

    try:
        if setup.protect:
            key = protect_management_key(session, pin)
        else:
            key = management_key(session, setup.management_key, pin)
        if missing:
            _authenticate(session, key)
            for slot, touch in missing.items():
                _generate_one(session, slot, touch, kind)
            _count_retired(session, list(missing), key)
    except CommandError as exc:
        raise HsmError(f"the PIV card refused a command while preparing its keys ({exc})") from None
    return key


def protect_management_key(session: PivSession, pin: str) -> bytes:
    """Replace the factory default management key with a random 3DES key stored PIN-protected
    on the card (PIVMAN data flag and protected data tag 0x89, the layout ``ykman --protect``
    uses); the new key.

    Unlike ykman, the key is stored and flagged before the card takes it: a card pulled between
    two writes keeps the default key, and a stored key the card refuses while the default works
    is such an interrupted run, which this completes with the stored key."""
    from ykman.piv import get_pivman_data, get_pivman_protected_data
    from yubikit.piv import MANAGEMENT_KEY_TYPE

    pivman = get_pivman_data(session)
    session.verify_pin(pin)  # the protected object is read and written behind the PIN
    protected = get_pivman_protected_data(session)
    stored = bytes(protected.key) if pivman.has_protected_key and protected.key else None
    if stored is not None and _accepted(session, stored):
        raise ConfigError(
            "the card's management key is already stored PIN-protected on it, and vaultd reads "
            "it from there: run `vaultd init` without --protect-management-key"
        )
    if not _accepted(session, DEFAULT_MANAGEMENT_KEY):
        raise ConfigError(
            "--protect-management-key replaces only the factory default management key, and "
            "this card has another one, which vaultd will not overwrite: pass it with "
            "`vaultd init --management-key-stdin` instead"
        )
    new_key = stored or secrets.token_bytes(24)  # 3DES: ykcs11 2.2 speaks no other at SO login
    _store_protected(session, pivman, protected, new_key)
    session.set_management_key(MANAGEMENT_KEY_TYPE.TDES, new_key)
    return new_key


def _accepted(session: PivSession, key: bytes) -> bool:
    """Whether the card authenticates ``key`` as its management key (no retry counter)."""
    from yubikit.core import CommandError

    try:
        session.authenticate(key)
    except CommandError:
        return False
    return True


def _store_protected(
    session: PivSession, pivman: PivmanData, protected: PivmanProtectedData, key: bytes
) -> None:
    """Keep ``key`` in the PIN-protected object, then flag it there (management key
    authenticated, PIN verified)."""
    from ykman.piv import OBJECT_ID_PIVMAN_DATA, OBJECT_ID_PIVMAN_PROTECTED_DATA

    protected.key = key
    session.put_object(OBJECT_ID_PIVMAN_PROTECTED_DATA, protected.get_bytes())
    if pivman.has_derived_key:
        pivman.salt = None  # a PIN-derived key is replaced, as ykman does
    pivman.mgm_key_protected = True
    session.put_object(OBJECT_ID_PIVMAN_DATA, pivman.get_bytes())


def management_key(session: PivSession, given: bytes | None, pin: str) -> bytes:
    """``given``, else the key stored PIN-protected on the card (unless only the factory
    default works: an interrupted protect), else the factory default."""
    from ykman.piv import get_pivman_data, get_pivman_protected_data

    if given is not None:
        return given
    if not get_pivman_data(session).has_stored_key:
        return DEFAULT_MANAGEMENT_KEY
    session.verify_pin(pin)
    stored = get_pivman_protected_data(session).key
    if stored is None:
        raise HsmError(
            "the card says its management key is stored on it, but none is there; run the "
            "command again with --management-key-stdin and the key (hex) on stdin"
        )
    if not _accepted(session, bytes(stored)) and _accepted(session, DEFAULT_MANAGEMENT_KEY):
        return DEFAULT_MANAGEMENT_KEY  # an interrupted --protect-management-key: warned of
    return bytes(stored)


def _generate_one(session: PivSession, slot: str, touch: TouchPolicy, kind: KeyKind) -> None:
    """A ``kind`` key in ``slot`` (PIN once) and a placeholder certificate, which OpenSC needs
    to list the slot; nobody checks its chain, so a throwaway key signs it (no touch at init)."""
    from yubikit.piv import KEY_TYPE, PIN_POLICY, SLOT, TOUCH_POLICY

    where = SLOT(int(slot, 16))
    key_type = KEY_TYPE.ECCP256 if kind == "ec" else KEY_TYPE.RSA2048
    public = session.generate_key(where, key_type, PIN_POLICY.ONCE, TOUCH_POLICY[touch.upper()])
    session.put_certificate(where, _placeholder_certificate(public, slot, kind))


def _placeholder_certificate(public: PublicKeyTypes, slot: str, kind: KeyKind) -> x509.Certificate:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    expected = ec.EllipticCurvePublicKey if kind == "ec" else rsa.RSAPublicKey
    if not isinstance(public, expected):
        raise HsmError(f"the card made a key that is not {KIND_WORDS[kind]} in PIV slot {slot}")
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, f"vaultd {slot}")])
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=365 * 20))
        .sign(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256())
    )


def slot_policy(reader: str, slot: str) -> tuple[str, str] | None:
    """The PIN and touch policy of the key in ``slot`` (GET METADATA), lower case; None without
    yubikit, a reader of that name, or metadata (firmware before 5.3)."""
    if not yubikit_installed():
        return None
    from yubikit.core import CommandError, NotSupportedError
    from yubikit.piv import SLOT

    with yubikit_session(reader) as session:
        if session is None:
            return None
        try:
            meta = session.get_slot_metadata(SLOT(int(slot, 16)))
        except (CommandError, NotSupportedError):
            return None
        return meta.pin_policy.name.lower(), meta.touch_policy.name.lower()


@dataclass(frozen=True)
class CardAccess:
    """Whether the card's PIN, PUK and management key are still the factory defaults (GET
    METADATA, no PIN and no authentication), and whether a management key is flagged as
    stored PIN-protected on the card."""

    default_pin: bool
    default_puk: bool
    default_management_key: bool
    management_key_stored: bool


def card_access(reader: str) -> CardAccess | None:
    """:class:`CardAccess` of the card in ``reader``; None without yubikit, a reader of that
    name, or metadata (firmware before 5.3)."""
    if not yubikit_installed():
        return None
    from ykman.piv import get_pivman_data
    from yubikit.core import CommandError, NotSupportedError

    with yubikit_session(reader) as session:
        if session is None:
            return None
        try:
            return CardAccess(
                default_pin=session.get_pin_metadata().default_value,
                default_puk=session.get_puk_metadata().default_value,
                default_management_key=session.get_management_key_metadata().default_value,
                management_key_stored=get_pivman_data(session).has_stored_key,
            )
        except (CommandError, NotSupportedError):
            return None


@contextmanager
def yubikit_session(reader: str) -> Iterator[PivSession | None]:
    """yubikit's PivSession on the card in PC/SC ``reader``; None without yubikit (the
    ``yubikey`` extra) or without such a reader."""
    try:
        from smartcard.System import readers  # type: ignore[import-untyped]
        from ykman.pcsc import ScardSmartCardConnection
        from yubikit.piv import PivSession
    except ImportError:
        yield None
        return
    found = [r for r in readers() if str(r) == reader.strip()]
    if not found:
        yield None
        return
    connection = found[0].createConnection()
    connection.connect()
    try:
        yield PivSession(ScardSmartCardConnection(connection))  # type: ignore[no-untyped-call]
    finally:
        connection.disconnect()
        connection.release()
