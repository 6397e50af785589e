"""Store forgery under token ECDH (issue 14; docs/threat-model.md T6).

Sealing to a token ECDH key needs only its public point, which any process can read from the
token without the PIN.  Someone who can write the store file can therefore seal records and an
index of their own (their AWS keys, say) to that point.  The store index carries a tag by the
token's audit key over the index and every record, so such a store, or one forged record in a
real store, is refused.  The attacker here is real: a PIN-less PKCS#11 session on SoftHSM2.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pkcs11
import pytest
from pkcs11 import Attribute, KeyType, ObjectClass

from vaultd.core.envelope import seal
from vaultd.core.model import RecordKind
from vaultd.errors import StoreUnreadable
from vaultd.keys.ecdh import EcdhTokenKey, key_id_for, seal_to
from vaultd.store.files import INDEX_KIND, INDEX_NAME, SealedStore, _context, _index_context
from vaultd.testing.clock import FakeClock
from vaultd.testing.softhsm import SoftHsmToken

pytestmark = pytest.mark.hsm

KP = RecordKind.KEY_PAIR
ATTACKER_KEYS = b"AKIAATTACKER/attacker-secret"


class PublicPointSealer:
    """What the attacker has: the token's public point and nothing else (no PIN, no token)."""

    def __init__(self, point: bytes) -> None:
        self._point = point
        self.key_id = key_id_for(point)

    def random(self, n: int) -> bytes:
        return secrets.token_bytes(n)

    def encrypt(self, iv: bytes, plaintext: bytes, aad: bytes) -> bytes:
        return seal_to(self._point, iv, plaintext, aad)

    def decrypt(self, iv: bytes, ciphertext: bytes, aad: bytes) -> bytes:
        raise AssertionError("the attacker cannot open")


def _public_point_without_pin(softhsm: SoftHsmToken, key_label: str) -> bytes:
    token = pkcs11.lib(softhsm.module_path).get_token(token_label=softhsm.label)
    with token.open() as session:  # no login
        query = {
            Attribute.CLASS: ObjectClass.PUBLIC_KEY,
            Attribute.KEY_TYPE: KeyType.EC,
            Attribute.LABEL: key_label,
        }
        (public,) = session.get_objects(query)
        raw = bytes(public[Attribute.EC_POINT])
    return raw[2:] if raw[:2] == b"\x04\x41" else raw


@pytest.fixture
def vault(softhsm: SoftHsmToken, key_label: str) -> Iterator[EcdhTokenKey]:
    key = EcdhTokenKey.open(
        softhsm.module_path, softhsm.label, key_label, softhsm.user_pin, create_key=True
    )
    yield key
    key.close()


@pytest.fixture
def store(vault: EcdhTokenKey, tmp_path: Path) -> SealedStore:
    s = SealedStore(
        tmp_path / "data" / "store.vault", vault, vault, FakeClock(), authenticator=vault
    )
    s.initialize()
    s.put(KP, "prod", b"the user's own keys")
    return s


def _forged_record(sealer: PublicPointSealer, name: str, generation: int) -> dict[str, Any]:
    created = "2026-01-01T00:00:00Z"
    blob = seal(
        sealer,
        ATTACKER_KEYS,
        kind=KP.value,
        name=name,
        generation=generation,
        context=_context(created, "", False),
    )
    return {
        "kind": KP.value,
        "name": name,
        "created": created,
        "masked_id": "",
        "root": False,
        "blob": base64.b64encode(blob).decode(),
    }


def _doc(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_bytes().partition(b"\n")[2])
    return doc


def _write(path: Path, doc: dict[str, Any]) -> None:
    path.write_bytes(b"VAULTD-STORE 1\n" + json.dumps(doc).encode())


def test_a_whole_store_forged_with_the_public_key_is_refused(
    store: SealedStore, vault: EcdhTokenKey, softhsm: SoftHsmToken, key_label: str
) -> None:
    sealer = PublicPointSealer(_public_point_without_pin(softhsm, key_label))
    assert sealer.key_id == vault.key_id
    doc = _doc(store.path)
    generation = doc["generation"]
    index = seal(
        sealer,
        b"",
        kind=INDEX_KIND,
        name=INDEX_NAME,
        generation=generation,
        context=_index_context([(KP, "prod")]),
    )
    forged = {
        "generation": generation,
        "key_id": sealer.key_id,
        "index": base64.b64encode(index).decode(),
        "records": [_forged_record(sealer, "prod", generation)],
    }
    for tag in (None, doc["index_tag"]):  # no tag, or the real store's tag copied over
        _write(store.path, forged if tag is None else {**forged, "index_tag": tag})
        with pytest.raises(StoreUnreadable, match="tag"):
            store.get(KP, "prod")


def test_one_forged_record_in_a_real_store_is_refused(
    store: SealedStore, softhsm: SoftHsmToken, key_label: str
) -> None:
    sealer = PublicPointSealer(_public_point_without_pin(softhsm, key_label))
    doc = _doc(store.path)
    doc["records"] = [_forged_record(sealer, "prod", doc["generation"])]
    _write(store.path, doc)
    with pytest.raises(StoreUnreadable, match="tag"):
        store.get(KP, "prod")


def test_the_owner_store_opens_and_every_write_is_tagged(
    store: SealedStore, vault: EcdhTokenKey
) -> None:
    first = _doc(store.path)["index_tag"]
    store.put(KP, "dev", b"more")
    assert _doc(store.path)["index_tag"] != first
    assert store.get(KP, "prod") == b"the user's own keys"
    assert store.names(KP) == ["dev", "prod"]


def test_an_ecdh_store_needs_an_authenticator(vault: EcdhTokenKey, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="authenticator"):
        SealedStore(tmp_path / "store.vault", vault, vault, FakeClock())


def _prod(doc: dict[str, Any]) -> dict[str, Any]:
    (record,) = [r for r in doc["records"] if r["name"] == "prod"]
    return record


def test_a_write_opens_no_other_record(store: SealedStore) -> None:
    """A write keeps the other records as they were sealed (opening each would be a touch on a
    touch-always YubiKey); the tag binds each, and the generation it was sealed at, to the new
    generation."""
    before = _prod(_doc(store.path))
    store.put(KP, "dev", b"more")
    doc = _doc(store.path)
    assert _prod(doc)["blob"] == before["blob"]
    assert _prod(doc)["sealed"] == doc["generation"] - 1
    store.put(KP, "ops", b"yet more")
    assert _prod(_doc(store.path)) == _prod(doc)  # kept again, still at the same generation
    assert store.get(KP, "prod") == b"the user's own keys"


def test_an_older_copy_of_a_record_spliced_in_is_refused(store: SealedStore) -> None:
    """The user rotated the keys; someone who kept the old record puts it back, with the
    generation it was sealed at: the tag does not cover it."""
    old = _prod(_doc(store.path)) | {"sealed": _doc(store.path)["generation"]}
    store.put(KP, "prod", b"rotated keys", replace=True)
    store.put(KP, "dev", b"more")  # the new prod record now carries its sealed generation too
    doc = _doc(store.path)
    doc["records"] = [old if r["name"] == "prod" else r for r in doc["records"]]
    _write(store.path, doc)
    with pytest.raises(StoreUnreadable, match="tag"):
        store.get(KP, "prod")


@pytest.mark.parametrize("edit", ["dropped", "moved back"])
def test_a_record_sealed_generation_edited_is_refused(store: SealedStore, edit: str) -> None:
    store.put(KP, "dev", b"more")
    doc = _doc(store.path)
    record = _prod(doc)
    if edit == "dropped":
        del record["sealed"]
    else:
        record["sealed"] -= 1
    _write(store.path, doc)
    with pytest.raises(StoreUnreadable, match="tag"):
        store.get(KP, "prod")
