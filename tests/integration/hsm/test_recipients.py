"""Records sealed to a token and a recovery key open with either one (issue 14 item 5).

The token is a real SoftHSM2 token under each scheme (token AEAD and token ECDH); the recovery
key is host cryptography by design.
"""

from __future__ import annotations

import pytest

from vaultd.core.envelope import ALG_RECIPIENTS, parse_header, seal, unseal
from vaultd.core.ports import SealingKey
from vaultd.errors import ConfigError, RecordCorrupt
from vaultd.keys import recovery
from vaultd.keys.recipients import RecipientSet, TokenRecipient, set_key_id

pytestmark = pytest.mark.hsm

BINDING = {"kind": "key-pair", "name": "prod", "generation": 3, "context": b"ctx"}


def _seal(wrapper: RecipientSet, plaintext: bytes = b"secret") -> bytes:
    return seal(wrapper, plaintext, **BINDING)  # type: ignore[arg-type]


def _open(wrapper: RecipientSet, blob: bytes) -> bytes:
    return unseal(wrapper, blob, **BINDING)  # type: ignore[arg-type]


def test_either_recipient_opens_alone(token: SealingKey) -> None:
    rec = recovery.generate()
    primary = TokenRecipient(token)
    by_token = RecipientSet([primary, rec], primary)
    blob = _seal(by_token)
    header = parse_header(blob)
    assert header.algorithm == ALG_RECIPIENTS
    assert header.key_id == set_key_id([token.key_id, rec.id])
    assert _open(by_token, blob) == b"secret"
    token.close()  # the token is gone: the typed recovery key opens alone
    typed = recovery.from_words(rec.to_words())
    assert _open(RecipientSet([primary, typed], typed), blob) == b"secret"


def test_a_record_of_another_set_or_a_wrong_recovery_key_is_refused(token: SealingKey) -> None:
    rec, other = recovery.generate(), recovery.generate()
    primary = TokenRecipient(token)
    blob = _seal(RecipientSet([primary, rec], primary))
    with pytest.raises(RecordCorrupt):  # the set is in the key id, hence the AAD
        _open(RecipientSet([primary, other], primary), blob)
    with pytest.raises(RecordCorrupt):
        _open(RecipientSet([primary], primary), blob)


def test_every_byte_flip_is_record_corrupt_for_each_opener(token: SealingKey) -> None:
    rec = recovery.generate()
    primary = TokenRecipient(token)
    wrappers = [RecipientSet([primary, rec], primary), RecipientSet([primary, rec], rec)]
    blob = _seal(wrappers[0], b"0123")
    for wrapper, other in zip(wrappers, [rec.id, token.key_id], strict=True):
        # Only a flip inside the other recipient's wrapped key leaves this one's data intact
        # (as in age); the store's index tag covers the whole blob.
        start = blob.index(other.encode()) + len(other)
        length = int.from_bytes(blob[start : start + 2], "big")
        others_wrapped = range(start + 2, start + 2 + length)
        for i in range(len(blob)):
            bad = bytearray(blob)
            bad[i] ^= 0x01
            if i in others_wrapped:
                assert _open(wrapper, bytes(bad)) == b"0123"
            else:
                with pytest.raises(RecordCorrupt):
                    _open(wrapper, bytes(bad))
    for cut in range(1, len(blob)):
        with pytest.raises(RecordCorrupt):
            _open(wrappers[1], blob[:cut])


def test_set_rules() -> None:
    rec = recovery.generate()
    with pytest.raises(ValueError, match="distinct"):
        RecipientSet([rec, rec], rec)
    with pytest.raises(ValueError, match="not in the recipient set"):
        RecipientSet([rec], recovery.generate())
    many = [recovery.generate() for _ in range(17)]
    with pytest.raises(ConfigError, match=r"at most 16 keys and this needs 17.*keys remove"):
        RecipientSet(many, many[0])
