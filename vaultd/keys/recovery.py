"""The offline recovery key: a P-256 key pair whose private half is shown once and never stored.

Made at ``vaultd init`` (or ``vaultd keys add --recovery``), it is a backup recipient of every
record (:mod:`vaultd.keys.recipients`): each record's data key is also sealed to its public
point, as with a token ECDH key (ephemeral ECDH, HKDF-SHA256, AES-256-GCM on the host), so a
vault whose token is lost opens with the recovery key typed in.

The private scalar is written for a person as :func:`to_words`: RFC 4648 base32 of the 32-byte
scalar and a 2-byte SHA-256 checksum, in eleven groups of five (``ABCDE-FGHIJ-...``), so a
mistyped group is caught (:func:`from_words`) before any record is tried.  It is read from a
terminal without echo or from stdin, never from argv or the environment's variables.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from functools import cache
from typing import Final, Protocol

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from vaultd.errors import ConfigError
from vaultd.keys.ecdh import open_with_secret, seal_to, split_body

KIND: Final = "recovery-p256"
"""Recipient ids of recovery keys start with ``recovery-p256:``."""
TOKEN_KIND: Final = "token-p256"  # noqa: S105 - a recipient id prefix, not a password
"""Recipient ids of backup tokens (:mod:`vaultd.keys.backup_token`) start with this."""
_CHECKSUM_LEN: Final = 2
_GROUP: Final = 5
_SCALAR_LEN: Final = 32
_ORDER: Final = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_CURVE: Final = ec.SECP256R1()
_AUTH_POINT_SEED: Final = b"vaultd/recovery-auth-point/v1"
_AUTH_INFO: Final = b"vaultd/recovery-auth-key/v1"


@cache
def auth_point() -> ec.EllipticCurvePublicKey:
    """H: the first SHA-256(seed || counter) that is the x of a P-256 point (even y).

    Found by hashing, so nobody knows its private key: ``ECDH(b, H)`` is known only to the
    holder of ``b``.
    """
    counter = 0
    while True:
        x = hashlib.sha256(_AUTH_POINT_SEED + counter.to_bytes(4, "big")).digest()
        try:
            return ec.EllipticCurvePublicKey.from_encoded_point(_CURVE, b"\x02" + x)
        except ValueError:
            counter += 1


def auth_tag(auth_key: bytes, digest: bytes) -> bytes:
    """HMAC-SHA256 of a store digest under a backup's authentication key."""
    return hmac.new(auth_key, digest, hashlib.sha256).digest()


def auth_key_from(secret: bytes, point: bytes) -> bytes:
    """K = HKDF-SHA256(ECDH(backup key, H)), salted with the backup's public ``point``."""
    return HKDF(hashes.SHA256(), 32, salt=point, info=_AUTH_INFO).derive(secret)


def recipient_id(point: bytes, kind: str = KIND) -> str:
    """The recipient id of the backup of ``kind`` with uncompressed public ``point``."""
    return f"{kind}:{hashlib.sha256(point).hexdigest()[:32]}"


@dataclass(frozen=True, slots=True)
class TokenRef:
    """Where a backup token is found: its module, token label and key (label or PIV slot)."""

    module: str
    label: str
    key: str


@dataclass(frozen=True, slots=True)
class Backup:
    """A backup enrolled in a store: its public point, authentication key K and, for a backup
    token, where it is found (``None``: a recovery key)."""

    point: bytes
    auth_key: bytes = field(repr=False)
    token: TokenRef | None = None

    @property
    def kind(self) -> str:
        """The kind its recipient id starts with: a recovery key's or a backup token's."""
        return KIND if self.token is None else TOKEN_KIND

    @property
    def id(self) -> str:
        """The recipient id."""
        return recipient_id(self.point, self.kind)


class BackupOpener(Protocol):
    """A backup whose private half is here (a typed recovery key, a logged-in backup token)."""

    @property
    def id(self) -> str: ...

    def wrap(self, iv: bytes, plaintext: bytes, aad: bytes) -> bytes: ...

    def unwrap(self, iv: bytes, body: bytes, aad: bytes) -> bytes: ...

    def auth_key(self) -> bytes: ...


def _checksum(scalar: bytes) -> bytes:
    return hashlib.sha256(b"vaultd recovery key\x00" + scalar).digest()[:_CHECKSUM_LEN]


class RecoveryKey:
    """A recovery key pair in memory: seals to and opens from its public point."""

    def __init__(self, scalar: bytes) -> None:
        """Internal: use :func:`generate` or :func:`from_words`."""
        value = int.from_bytes(scalar)
        if len(scalar) != _SCALAR_LEN or not 1 <= value < _ORDER:
            raise ConfigError("the recovery key is not a valid P-256 key; check what you typed")
        self._scalar = scalar
        self._private = ec.derive_private_key(value, _CURVE)
        self.public_point = self._private.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        self.id = recipient_id(self.public_point)

    def to_words(self) -> str:
        """The private key as eleven dash-separated groups of five base32 characters."""
        text = base64.b32encode(self._scalar + _checksum(self._scalar)).decode().rstrip("=")
        return "-".join(text[i : i + _GROUP] for i in range(0, len(text), _GROUP))

    def wrap(self, iv: bytes, plaintext: bytes, aad: bytes) -> bytes:
        """Seal to this key's public point (no private key needed)."""
        return seal_to(self.public_point, iv, plaintext, aad)

    def auth_key(self) -> bytes:
        """K = HKDF(ECDH(this key, H)): a MAC key only this key's holder can re-derive.

        Sealed under the vault's recipients at enrolment, it tags every store write, so a store
        opened with this key alone (token lost) is still checked for forgery.
        """
        secret = self._private.exchange(ec.ECDH(), auth_point())
        return auth_key_from(secret, self.public_point)

    def backup(self) -> Backup:
        """This key as a store's backup: its point and K."""
        return Backup(self.public_point, self.auth_key())

    def unwrap(self, iv: bytes, body: bytes, aad: bytes) -> bytes:
        """Open what :meth:`wrap` sealed; ``RecordCorrupt`` on any mismatch."""
        ephemeral, ciphertext = split_body(iv, body)
        peer = ec.EllipticCurvePublicKey.from_encoded_point(_CURVE, ephemeral)
        secret = self._private.exchange(ec.ECDH(), peer)
        return open_with_secret(secret, ephemeral, self.public_point, iv, ciphertext, aad)


class PublicRecovery:
    """A backup (recovery key or backup token) as a recipient known only by its public point
    (the store file's); ``kind`` is that of its recipient id."""

    def __init__(self, point: bytes, kind: str = KIND) -> None:
        """``ConfigError`` unless ``point`` is an uncompressed P-256 point."""
        try:
            ec.EllipticCurvePublicKey.from_encoded_point(_CURVE, point)
        except ValueError:
            raise ConfigError("a backup's public point is not on P-256") from None
        if len(point) != 65:
            raise ConfigError("a backup's public point is not uncompressed")
        self.public_point = point
        self.id = recipient_id(point, kind)

    def wrap(self, iv: bytes, plaintext: bytes, aad: bytes) -> bytes:
        """Seal to the public point."""
        return seal_to(self.public_point, iv, plaintext, aad)


def generate() -> RecoveryKey:
    """A new recovery key from the host's random generator."""
    while True:
        scalar = secrets.token_bytes(_SCALAR_LEN)
        if 1 <= int.from_bytes(scalar) < _ORDER:
            return RecoveryKey(scalar)


def from_words(text: str) -> RecoveryKey:
    """Parse :meth:`RecoveryKey.to_words` output (spaces, dashes and case are ignored).

    ``ConfigError`` naming what is wrong (length, alphabet, checksum), never echoing the input.
    """
    clean = "".join(text.split()).replace("-", "").upper()
    want = -(-(_SCALAR_LEN + _CHECKSUM_LEN) * 8 // 5)
    if len(clean) != want:
        raise ConfigError(
            f"the recovery key has {len(clean)} characters, not {want}: type all eleven groups"
        )
    try:
        raw = base64.b32decode(clean + "=" * (-len(clean) % 8))
    except ValueError:
        raise ConfigError(
            "the recovery key holds characters outside A-Z and 2-7; check what you typed"
        ) from None
    scalar, check = raw[:_SCALAR_LEN], raw[_SCALAR_LEN:]
    if not secrets.compare_digest(check, _checksum(scalar)):
        raise ConfigError("the recovery key's checksum does not match: a group is mistyped")
    return RecoveryKey(scalar)
