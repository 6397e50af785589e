"""Sealed-record envelope, format v1 (pure: the key stays behind the ``KeyWrapper`` port).

Blob layout (all integers big-endian)::

    magic      4 bytes   b"VDE1"
    version    1 byte    0x01
    algorithm  1 byte    0x01 = AES-256-GCM in the token (token AEAD)
                         0x02 = ECDH P-256 in the token, HKDF-SHA256 + AES-256-GCM on the host
                         0x03 = a data key wrapped to each of a set of recipients (a token and
                                backups such as a recovery key), AES-256-GCM on the host
                         0x04 = a data key unwrapped by RSA-2048 OAEP (SHA-256) in the token,
                                AES-256-GCM on the host
    key id     1-byte length (1..255) + UTF-8 bytes
    iv         12 bytes  from ``wrapper.random(12)``
    body       ciphertext || 16-byte tag; for 0x02, the 65-byte ephemeral point first; for
               0x03, the recipient stanzas first (``vaultd.keys.recipients``); for 0x04, the
               256-byte OAEP-wrapped data key first

The algorithm follows from the key id: ``ecdh-p256:...`` ids seal with 0x02,
``recipients:...`` ids (a hash of the recipient set) with 0x03, ``rsa-oaep:...`` ids with 0x04,
all others with 0x01, and a
blob whose algorithm byte disagrees with its key id is corrupt.  Both are in the AAD, and the
store binds the key id in its index, so a record sealed under one scheme never opens under
another (no downgrade).

The AAD is :func:`pack_fields` over magic, version, algorithm, key id, kind, name, generation
(8 bytes) and the caller's non-secret ``context``.  Each field is length-prefixed, so no two
tuples give the same AAD.  Every parse or tag failure raises :class:`RecordCorrupt`.
"""

from __future__ import annotations

from dataclasses import dataclass

from vaultd.core.ports import KeyWrapper
from vaultd.errors import HsmError, RecordCorrupt, StoreError

MAGIC = b"VDE1"
VERSION = 1
ALG_AES_256_GCM = 1
ALG_ECDH_P256 = 2
ALG_RECIPIENTS = 3
ALG_RSA_OAEP = 4
IV_LEN = 12
TAG_LEN = 16
POINT_LEN = 65
WRAPPED_LEN = 256
_SCHEME_ALGORITHMS = {
    "ecdh-p256": ALG_ECDH_P256,
    "recipients": ALG_RECIPIENTS,
    "rsa-oaep": ALG_RSA_OAEP,
}
_MIN_BODY = {
    ALG_AES_256_GCM: TAG_LEN,
    ALG_ECDH_P256: POINT_LEN + TAG_LEN,
    ALG_RECIPIENTS: 1 + TAG_LEN,
    ALG_RSA_OAEP: WRAPPED_LEN + TAG_LEN,
}
MAX_KEY_ID_LEN = 255
MAX_GENERATION = 2**64 - 1

_FIXED_LEN = len(MAGIC) + 3  # magic, version, algorithm, key-id length
MIN_BLOB_LEN = _FIXED_LEN + 1 + IV_LEN + TAG_LEN


@dataclass(frozen=True, slots=True)
class EnvelopeHeader:
    """The clear-text header of a sealed blob."""

    version: int
    algorithm: int
    key_id: str
    iv: bytes


def pack_fields(*fields: bytes) -> bytes:
    """Concatenate ``fields``, each prefixed with its 4-byte length (an injective encoding)."""
    return b"".join(len(f).to_bytes(4, "big") + f for f in fields)


def algorithm_for(key_id: str) -> int:
    """The envelope algorithm of records sealed under ``key_id`` (its ``scheme:`` prefix)."""
    scheme, sep, _ = key_id.partition(":")
    return _SCHEME_ALGORITHMS.get(scheme, ALG_AES_256_GCM) if sep else ALG_AES_256_GCM


def seals_publicly(key_id: str) -> bool:
    """Whether anyone with a public key can seal records under ``key_id`` (token ECDH, token
    RSA-OAEP, or a recipient set, which holds a recovery key or a token ECDH key).

    Anyone who can read that public key can seal such records, so a store of them must be
    authenticated by a token operation only the key holder can do (``vaultd.store.files``).
    """
    return algorithm_for(key_id) != ALG_AES_256_GCM


def _split(blob: bytes) -> tuple[EnvelopeHeader, bytes]:
    if len(blob) < MIN_BLOB_LEN:
        raise RecordCorrupt(
            f"sealed record is {len(blob)} bytes, shorter than the minimum {MIN_BLOB_LEN}: "
            "it is truncated; restore it"
        )
    if blob[:4] != MAGIC:
        raise RecordCorrupt("sealed record has a wrong magic: it is not a vaultd envelope")
    version, algorithm, key_id_len = blob[4], blob[5], blob[6]
    if version != VERSION:
        raise RecordCorrupt(
            f"sealed record has envelope version {version}; this vaultd reads version {VERSION}"
        )
    if algorithm not in _MIN_BODY:
        raise RecordCorrupt(f"sealed record names unknown algorithm {algorithm}")
    if key_id_len == 0:
        raise RecordCorrupt("sealed record has an empty key id")
    iv_start = _FIXED_LEN + key_id_len
    body_start = iv_start + IV_LEN
    if len(blob) < body_start + _MIN_BODY[algorithm]:
        raise RecordCorrupt("sealed record is truncated: no room for its IV and tag")
    try:
        key_id = blob[_FIXED_LEN:iv_start].decode("utf-8")
    except UnicodeDecodeError:
        raise RecordCorrupt("sealed record has a key id that is not UTF-8") from None
    if algorithm != algorithm_for(key_id):
        raise RecordCorrupt(
            f"sealed record names algorithm {algorithm}, which key id {key_id!r} never uses"
        )
    header = EnvelopeHeader(version, algorithm, key_id, blob[iv_start:body_start])
    return header, blob[body_start:]


def parse_header(blob: bytes) -> EnvelopeHeader:
    """Parse and check a blob's header without decrypting; raises ``RecordCorrupt``."""
    return _split(blob)[0]


def _aad(header: EnvelopeHeader, kind: str, name: str, generation: int, context: bytes) -> bytes:
    return pack_fields(
        MAGIC,
        bytes([header.version]),
        bytes([header.algorithm]),
        header.key_id.encode("utf-8"),
        kind.encode("utf-8"),
        name.encode("utf-8"),
        generation.to_bytes(8, "big"),
        context,
    )


def seal(
    wrapper: KeyWrapper,
    plaintext: bytes,
    *,
    kind: str,
    name: str,
    generation: int,
    context: bytes = b"",
) -> bytes:
    """Encrypt ``plaintext`` into a v1 blob bound to key id, kind, name, generation, context."""
    if not 0 <= generation <= MAX_GENERATION:
        raise StoreError(f"store generation {generation} is out of range 0..2**64-1")
    key_id = wrapper.key_id.encode("utf-8")
    if not 1 <= len(key_id) <= MAX_KEY_ID_LEN:
        raise HsmError(f"key id must be 1-{MAX_KEY_ID_LEN} bytes, got {len(key_id)}")
    iv = wrapper.random(IV_LEN)
    if len(iv) != IV_LEN:
        raise HsmError(f"random source returned {len(iv)} bytes for a {IV_LEN}-byte IV")
    algorithm = algorithm_for(wrapper.key_id)
    header = EnvelopeHeader(VERSION, algorithm, wrapper.key_id, iv)
    body = wrapper.encrypt(iv, plaintext, _aad(header, kind, name, generation, context))
    prefix = MAGIC + bytes([VERSION, algorithm, len(key_id)]) + key_id
    return prefix + iv + body


def unseal(
    wrapper: KeyWrapper,
    blob: bytes,
    *,
    kind: str,
    name: str,
    generation: int,
    context: bytes = b"",
) -> bytes:
    """Check and decrypt a v1 blob; any parse, binding or tag failure raises ``RecordCorrupt``."""
    header, body = _split(blob)
    if not 0 <= generation <= MAX_GENERATION:
        raise RecordCorrupt(f"store generation {generation} is out of range 0..2**64-1")
    if header.key_id != wrapper.key_id:
        raise RecordCorrupt(
            f"record is sealed under key id {header.key_id!r}, but the token's key is "
            f"{wrapper.key_id!r}: use the token that holds key {header.key_id!r}"
        )
    return wrapper.decrypt(header.iv, body, _aad(header, kind, name, generation, context))
