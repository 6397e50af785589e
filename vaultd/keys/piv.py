"""PIV cards through a PKCS#11 module: keys found by slot, generated with the management key.

A PIV module (Yubico's ykcs11, OpenSC's PIV driver) names no key after vaultd: its objects are
the card's slots, with labels of the module's choosing ("Private key for Retired Key 1" in
ykcs11, "Retired KEY MAN 1" in OpenSC) but the same CKA_ID in both: 1 = 9a, 2 = 9c, 3 = 9d,
4 = 9e and 5..24 = the retired slots 82..95.  So vaultd finds the vault key and the audit key by
the CKA_ID of ``pkcs11.piv_slot`` and ``pkcs11.piv_audit_slot``, whichever module reaches the
card.  The audit key defaults to 9a because OpenSC offers retired EC keys for derive only.

ykcs11 generates a key at SO login, whose PIN is the management key in hex; it refuses SO login
while any read-only session is open in the process, so the module is reinitialised around it.
Debian's ykcs11 2.2 sends no PIN or touch policy: the card's defaults apply.

ykcs11 writes a certificate with each key it generates, but OpenSC lists a retired slot only
when the Key History object (5FC10C) counts it, and no PKCS#11 module writes that object: with
yubikit (the ``yubikey`` extra) :func:`count_retired_keys` writes it with the management key.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Final, Literal

from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass, Session, Token
from pkcs11 import exceptions as pkerr
from pkcs11.util.ec import encode_named_curve_parameters

from vaultd.errors import HsmError

if TYPE_CHECKING:
    from pkcs11._pkcs11 import lib as Pkcs11Lib
    from yubikit.piv import PivSession

DEFAULT_MANAGEMENT_KEY: Final = bytes.fromhex("010203040506070801020304050607080102030405060708")
"""The factory default PIV management key (3DES): anyone may use it, change it."""
RSA_BITS: Final = 2048
"""The RSA modulus size of the token RSA-OAEP scheme's keys."""
_NAMED: Final = {"9a": 1, "9c": 2, "9d": 3, "9e": 4}
SLOTS: Final = (*_NAMED, *(f"{n:02x}" for n in range(0x82, 0x96)))
"""The PIV key slots vaultd may use, as ``ykman`` names them."""
_PIV_MANUFACTURERS: Final = ("Yubico", "piv_II")
"""Token manufacturer ids of ykcs11 and of OpenSC's PIV driver."""


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
    kind: Literal["ec", "rsa"] = "ec",
) -> None:
    """Generate a P-256 (``ec``) or RSA-2048 (``rsa``) key in each of ``slots``, logged in as SO
    with ``management_key``.

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
        raise HsmError(
            "the card refused the management key; pass the right one (hex) with "
            "`vaultd init --management-key-stdin`"
        ) from None
    with so:
        for slot in slots:
            _generate_one(so, slot, kind)
    lib.reinitialize()


def _generate_one(so: Session, slot: str, kind: Literal["ec", "rsa"]) -> None:
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
    needed = max(map(_retired_index, slots), default=0)
    if not needed:
        return True
    try:
        from yubikit.core import Tlv
        from yubikit.core.smartcard import ApduError
        from yubikit.piv import OBJECT_ID
    except ImportError:
        return False
    with yubikit_session(reader) as session:
        if session is None:
            return False
        try:
            counted = Tlv.parse_dict(session.get_object(OBJECT_ID.KEY_HISTORY)).get(0xC1, b"\0")
        except ApduError:  # no such object yet
            counted = b"\0"
        if counted[0] < needed:
            session.authenticate(management_key)
            history = Tlv(0xC1, bytes([needed])) + Tlv(0xC2, b"\0") + Tlv(0xFE, b"")
            session.put_object(OBJECT_ID.KEY_HISTORY, history)
    return True


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
