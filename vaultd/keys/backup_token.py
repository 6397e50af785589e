"""A backup token: a second PKCS#11 token's P-256 key as a recipient of every record (issue 14).

Sealing to it needs only its public point (ephemeral ECDH, HKDF and AES-GCM on the host, as for
a recovery key or the token ECDH scheme), so day-to-day writes never need it present.  Opening
with it is one ``C_DeriveKey(CKM_ECDH1_DERIVE, CKD_NULL)`` in the backup token per data key.

Its authentication key K is ``HKDF(ECDH(backup key, H))`` (:func:`vaultd.keys.recovery.auth_point`),
the ECDH done *in the backup token*: at enrolment K is sealed under the vault's recipients,
and when the primary token is lost the backup token alone re-derives K and checks the store's
tag, so a store forged with the public point alone is refused (docs/threat-model.md T6).

The key is found by label (generated non-extractable when absent), or on a PIV card by the
CKA_ID of its slot (:mod:`vaultd.keys.piv`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from cryptography.hazmat.primitives import serialization
from pkcs11 import Mechanism, Session, Token

from vaultd.errors import HsmError, HsmKeyUnsafe, TokenNotFound
from vaultd.keys import piv
from vaultd.keys.ecdh import (
    _derive,
    _find_ec_key,
    _piv_key,
    open_with_secret,
    seal_to,
    split_body,
)
from vaultd.keys.pkcs11 import (
    _close_quietly,
    _find_again,
    _login,
    _pin_text,
    _TokenSession,
    _translated,
    load_module,
)
from vaultd.keys.recovery import (
    TOKEN_KIND,
    Backup,
    TokenRef,
    auth_key_from,
    auth_point,
    recipient_id,
)

_NEEDED: Final = {Mechanism.ECDH1_DERIVE: "CKM_ECDH1_DERIVE (ECDH)"}
_TO_GENERATE: Final = {Mechanism.EC_KEY_PAIR_GEN: "CKM_EC_KEY_PAIR_GEN (P-256 key generation)"}


@dataclass(frozen=True, slots=True)
class Identity:
    """A token as seen without logging in: enough to tell two tokens apart."""

    label: str
    serial: str
    manufacturer: str


def identity(module_path: str, token_label: str) -> Identity:
    """The identity of token ``token_label`` in ``module_path`` (no login, no PIN);
    ``TokenNotFound`` when it is not there."""
    with _translated("finding the token"):
        lib = load_module(module_path)
        try:
            token = _find_again(lib, token_label, module_path)
        except TokenNotFound:
            raise TokenNotFound(
                f"no token labelled {token_label!r} in {module_path}: insert the backup token "
                "or fix --token-label; nothing was done"
            ) from None
        serial = token.serial.decode("ascii", "replace").strip()
        return Identity(token.label, serial, token.manufacturer_id.strip())


@dataclass(slots=True)
class _Open:
    session: Session
    private_key: Any


class BackupToken(_TokenSession[_Open]):
    """A logged-in backup token: a recipient that seals to its point and opens in the token."""

    def __init__(self, state: _Open, point: bytes, ref: TokenRef, *, on_card: bool) -> None:
        """Internal: use :meth:`open`."""
        super().__init__(state)
        self.public_point = point
        self.ref = ref
        self.id = recipient_id(point, TOKEN_KIND)
        self.touch_possible = on_card
        """Whether an open may wait for a touch: a key on a PIV card."""

    @classmethod
    def open(
        cls,
        module_path: str,
        token_label: str,
        pin: str | bytearray,
        *,
        key_label: str | None = None,
        piv_slot: str | None = None,
        create_key: bool = False,
    ) -> BackupToken:
        """Check the token offers ECDH (before any login), log in once, find the key.

        ``key_label`` names a P-256 key (generated non-extractable when absent and
        ``create_key``); ``piv_slot`` names a PIV card's slot, whose key must already be there
        (``ykman piv keys generate``).  PIN errors are those of :meth:`TokenKey.open
        <vaultd.keys.pkcs11.TokenKey.open>`: one C_Login at most.
        """
        pin_text = _pin_text(pin)
        with _translated("loading the PKCS#11 module"):
            token = _find_again(load_module(module_path), token_label, module_path)
            generate = create_key and piv_slot is None  # a PIV slot's key is never made here
            _require(token, {**_NEEDED, **(_TO_GENERATE if generate else {})})
        session = _login(token, pin_text, confirm_final_try=False)
        try:
            with _translated("finding the backup key"):
                found = _find_key(token, session, key_label, piv_slot, generate)
        except BaseException:
            _close_quietly(session)
            raise
        private_key, point, shown = found
        ref = TokenRef(module_path, token_label, shown)
        return cls(_Open(session, private_key), point, ref, on_card=piv.is_piv(token))

    def wrap(self, iv: bytes, plaintext: bytes, aad: bytes) -> bytes:
        """Seal to the public point (no token call)."""
        return seal_to(self.public_point, iv, plaintext, aad)

    def unwrap(self, iv: bytes, body: bytes, aad: bytes) -> bytes:
        """One ECDH in the backup token, HKDF and AES-GCM on the host; ``RecordCorrupt``."""
        ephemeral, ciphertext = split_body(iv, body)
        with self._touch_watch(), self._use("opening a record with the backup token") as st:
            secret = _derive(st.private_key, ephemeral)
        return open_with_secret(secret, ephemeral, self.public_point, iv, ciphertext, aad)

    def auth_key(self) -> bytes:
        """K, from the ECDH with H done in the backup token."""
        h = auth_point().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        with self._touch_watch(), self._use("deriving the backup's authentication key") as st:
            secret = _derive(st.private_key, h)
        return auth_key_from(secret, self.public_point)

    def backup(self) -> Backup:
        """This token as a store's backup: its point, K and where it is found."""
        return Backup(self.public_point, self.auth_key(), self.ref)


def _require(token: Token, needed: dict[Mechanism, str]) -> None:
    """``HsmError`` naming each mechanism in ``needed`` that ``token`` does not offer."""
    offered = set(token.slot.get_mechanisms())
    missing = [name for mech, name in needed.items() if mech not in offered]
    if missing:
        raise HsmError(
            f"token {token.label!r} cannot be a backup token: it does not offer "
            f"{' or '.join(missing)}; use a token with EC P-256 keys and ECDH, or a recovery "
            "key (`vaultd keys add --recovery`)"
        )


def _find_key(
    token: Token, session: Session, key_label: str | None, piv_slot: str | None, create: bool
) -> tuple[Any, bytes, str]:
    """The private key, its public point and how it was named (label or PIV slot)."""
    shown = key_label if piv_slot is None else f"PIV slot {piv_slot}"
    try:
        if piv_slot is not None:
            if not piv.is_piv(token):
                raise HsmError(
                    f"token {token.label!r} is not a PIV card; name its key with --key-label"
                )
            return (*_piv_key(session, piv_slot, "backup ECDH key"), f"PIV slot {piv_slot}")
        if key_label is None:
            raise HsmError("name the backup key with --key-label or --piv-slot")
        return (*_find_ec_key(session, key_label, create, "derive"), key_label)
    except HsmKeyUnsafe as exc:
        if exc.attribute != "missing":
            raise
        raise HsmKeyUnsafe(
            f"backup token {token.label!r} holds no P-256 key {shown!r}: enrol it with `vaultd "
            "keys add --token` (on a PIV card, generate the slot's key first with `ykman piv "
            "keys generate -a ECCP256`)",
            attribute="missing",
        ) from None
