"""Records sealed to a set of recipients, as age does: the envelope's algorithm 0x03.

Each record gets a fresh 32-byte data key; the record is AES-256-GCM under it on the host, and
the data key is wrapped to every recipient: the vault's token (its own scheme: AES-GCM in the
token, or token ECDH) and each backup (a recovery key, :mod:`vaultd.keys.recovery`).  Any one
recipient opens the record.  The envelope body is::

    count    1 byte (1..16)
    stanza   count times: id length (1 byte) || id || wrapped length (2 bytes) || IV (12) || wrapped
    payload  AES-256-GCM(data key, envelope IV, plaintext, record AAD): ciphertext || tag

The key id is ``recipients:`` and 32 hex chars of SHA-256 over the sorted recipient ids, so the
set is bound into every record's AAD and the store index; each data key is wrapped with AAD =
the record's AAD and the recipient id, so a stanza moved to another record or recipient fails.
Stanzas must name exactly the set, in order: a record sealed to another set is ``RecordCorrupt``.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Sequence
from typing import Final, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from vaultd.core.envelope import pack_fields
from vaultd.errors import ConfigError, HsmError, RecordCorrupt

SCHEME: Final = "recipients"
MAX_RECIPIENTS: Final = 16
_IV_LEN: Final = 12
_DATA_KEY_LEN: Final = 32
_WRAP_DOMAIN: Final = b"vaultd/recipients/v1/wrap"


class Recipient(Protocol):
    """Someone a data key can be wrapped to."""

    @property
    def id(self) -> str: ...

    def wrap(self, iv: bytes, plaintext: bytes, aad: bytes) -> bytes: ...


class Opener(Recipient, Protocol):
    """A recipient whose private half is here (a logged-in token, a typed recovery key)."""

    def unwrap(self, iv: bytes, body: bytes, aad: bytes) -> bytes: ...


class _Sealer(Protocol):
    @property
    def key_id(self) -> str: ...

    def encrypt(self, iv: bytes, plaintext: bytes, aad: bytes) -> bytes: ...

    def decrypt(self, iv: bytes, ciphertext: bytes, aad: bytes) -> bytes: ...


class TokenRecipient:
    """The vault's token key (token AEAD or token ECDH) as a recipient and opener."""

    def __init__(self, key: _Sealer) -> None:
        self._key = key

    @property
    def id(self) -> str:
        """The token key's id."""
        return self._key.key_id

    def wrap(self, iv: bytes, plaintext: bytes, aad: bytes) -> bytes:
        """Seal under the token's scheme."""
        return self._key.encrypt(iv, plaintext, aad)

    def unwrap(self, iv: bytes, body: bytes, aad: bytes) -> bytes:
        """Open in (token AEAD) or with (token ECDH) the token."""
        return self._key.decrypt(iv, body, aad)


class AbsentRecipient:
    """A recipient known by id alone (the lost token, while a recovery key opens the store)."""

    def __init__(self, rid: str) -> None:
        self.id = rid

    def wrap(self, iv: bytes, plaintext: bytes, aad: bytes) -> bytes:
        """Refuse: there is nothing here to seal to."""
        raise HsmError(f"recipient {self.id!r} is not present; vaultd cannot seal to it")


def set_key_id(ids: Sequence[str]) -> str:
    """The key id of the recipient set ``ids``."""
    digest = hashlib.sha256(pack_fields(*(i.encode() for i in sorted(ids)))).hexdigest()
    return f"{SCHEME}:{digest[:32]}"


def _wrap_aad(aad: bytes, recipient: str) -> bytes:
    return pack_fields(_WRAP_DOMAIN, aad, recipient.encode())


def _corrupt(reason: str) -> RecordCorrupt:
    return RecordCorrupt(f"a sealed record {reason}; restore it from a backup or add it again")


class RecipientSet:
    """A ``KeyWrapper`` that seals to every recipient and opens with ``opener``.

    ``ConfigError`` for more than 16 recipients; ``ValueError`` unless there is at least one,
    their ids are distinct and ``opener`` is one of them.
    """

    def __init__(
        self,
        recipients: Sequence[Recipient],
        opener: Opener,
        *,
        random: Callable[[int], bytes] = secrets.token_bytes,
    ) -> None:
        ids = [r.id for r in recipients]
        if len(ids) > MAX_RECIPIENTS:
            raise ConfigError(
                f"a store opens with at most {MAX_RECIPIENTS} keys and this needs {len(ids)}: "
                "remove one with `vaultd keys remove ID` (`vaultd keys list` shows them), then "
                "retry"
            )
        if not ids or len(set(ids)) != len(ids):
            raise ValueError("a recipient set needs distinct recipients, at least one")
        if opener.id not in ids:
            raise ValueError(f"the opener {opener.id!r} is not in the recipient set")
        self._recipients = sorted(recipients, key=lambda r: r.id)
        self._opener = opener
        self._random = random
        self._key_id = set_key_id(ids)

    @property
    def key_id(self) -> str:
        """``recipients:`` and a hash of the sorted recipient ids."""
        return self._key_id

    @property
    def recipient_ids(self) -> list[str]:
        """The recipients' ids, sorted."""
        return [r.id for r in self._recipients]

    def random(self, n: int) -> bytes:
        """``n`` random bytes from the host."""
        return self._random(n)

    def encrypt(self, iv: bytes, plaintext: bytes, aad: bytes) -> bytes:
        """A fresh data key wrapped to every recipient; the record under it."""
        data_key = secrets.token_bytes(_DATA_KEY_LEN)
        stanzas = [bytes([len(self._recipients)])]
        for recipient in self._recipients:
            wrap_iv = self._random(_IV_LEN)
            wrapped = wrap_iv + recipient.wrap(wrap_iv, data_key, _wrap_aad(aad, recipient.id))
            rid = recipient.id.encode()
            if len(rid) > 255 or len(wrapped) > 0xFFFF:
                raise HsmError(f"recipient {recipient.id!r} gave an oversized id or wrapped key")
            stanzas.append(bytes([len(rid)]) + rid + len(wrapped).to_bytes(2, "big") + wrapped)
        return b"".join(stanzas) + AESGCM(data_key).encrypt(iv, plaintext, aad)

    def decrypt(self, iv: bytes, body: bytes, aad: bytes) -> bytes:
        """Unwrap the data key with the opener, then open the payload; ``RecordCorrupt``."""
        stanzas, payload = _parse(body)
        if [rid for rid, _ in stanzas] != self.recipient_ids:
            raise _corrupt("is sealed to another set of recipients than this vault's")
        wrapped = dict(stanzas)[self._opener.id]
        if len(wrapped) <= _IV_LEN:
            raise _corrupt("has a truncated wrapped key")
        wrap_aad = _wrap_aad(aad, self._opener.id)
        data_key = self._opener.unwrap(wrapped[:_IV_LEN], wrapped[_IV_LEN:], wrap_aad)
        if len(data_key) != _DATA_KEY_LEN:
            raise _corrupt("holds a data key of the wrong length")
        try:
            return AESGCM(data_key).decrypt(iv, payload, aad)
        except InvalidTag:
            raise _corrupt(
                "failed authentication (its payload, IV or context does not match)"
            ) from None
        except ValueError:
            raise _corrupt("has a malformed payload") from None


def _parse(body: bytes) -> tuple[list[tuple[str, bytes]], bytes]:
    """Split the stanzas from the payload, checking every length before slicing."""
    count, pos = body[0], 1
    if not 1 <= count <= MAX_RECIPIENTS:
        raise _corrupt(f"names {count} recipients, outside 1..{MAX_RECIPIENTS}")
    stanzas: list[tuple[str, bytes]] = []
    for _ in range(count):
        if pos + 1 > len(body):
            raise _corrupt("is truncated inside its recipient stanzas")
        id_end = pos + 1 + body[pos]
        if id_end + 2 > len(body):
            raise _corrupt("is truncated inside its recipient stanzas")
        end = id_end + 2 + int.from_bytes(body[id_end : id_end + 2], "big")
        if end > len(body):
            raise _corrupt("is truncated inside its recipient stanzas")
        try:
            rid = body[pos + 1 : id_end].decode("utf-8")
        except UnicodeDecodeError:
            raise _corrupt("names a recipient that is not UTF-8") from None
        stanzas.append((rid, body[id_end + 2 : end]))
        pos = end
    return stanzas, body[pos:]
