"""A store sealed to its token and recovery keys (issue 14 items 5, 6), on real SoftHSM2 tokens
under both schemes: either key opens it; with the recovery key alone it is still checked."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from vaultd.app import open_token_key
from vaultd.core.model import RecordKind
from vaultd.core.ports import SealingKey
from vaultd.errors import HsmError, StoreUnreadable
from vaultd.keys import recovery
from vaultd.store.files import SealedStore
from vaultd.testing.clock import FakeClock
from vaultd.testing.softhsm import SoftHsmToken

pytestmark = pytest.mark.hsm

KP = RecordKind.KEY_PAIR


def _store(path: Path, key: SealingKey) -> SealedStore:
    return SealedStore(path, key, key, FakeClock(), authenticator=key)


def _backed_up(tmp_path: Path, token: SealingKey) -> tuple[SealedStore, recovery.RecoveryKey]:
    store = _store(tmp_path / "data" / "store.vault", token)
    store.initialize()
    store.put(KP, "a", b"secret a")
    rec = recovery.generate()
    store.reseal([rec.backup()])
    store.put(KP, "b", b"secret b")  # a normal write keeps the backup's tag
    return store, rec


def test_the_token_and_the_recovery_key_each_open_every_record(
    tmp_path: Path, token: SealingKey
) -> None:
    store, rec = _backed_up(tmp_path, token)
    assert store.get(KP, "a") == b"secret a"
    assert store.recipients() == [token.key_id, rec.id]
    typed = recovery.from_words(rec.to_words())
    snap = SealedStore.for_recovery(store.path, typed, FakeClock()).snapshot()
    assert [(i.name, text) for i, text in snap.records] == [("a", b"secret a"), ("b", b"secret b")]
    assert [b.id for b in snap.backups] == [rec.id]


def test_a_store_forged_with_the_public_points_is_refused_by_the_recovery_key(
    tmp_path: Path, token: SealingKey, softhsm: SoftHsmToken
) -> None:
    store, rec = _backed_up(tmp_path, token)
    body = json.loads(store.path.read_bytes().partition(b"\n")[2])
    entry = next(e for e in body["recipients"] if "public" in e)
    entry["tag"] = base64.b64encode(bytes(32)).decode()
    store.path.write_bytes(b"VAULTD-STORE 1\n" + json.dumps(body).encode())
    with pytest.raises(StoreUnreadable, match="tag by the recovery key"):
        SealedStore.for_recovery(store.path, rec, FakeClock()).snapshot()


def test_a_wrong_recovery_key_and_a_store_without_backups_are_refused(
    tmp_path: Path, token: SealingKey
) -> None:
    store, _ = _backed_up(tmp_path, token)
    with pytest.raises(StoreUnreadable, match="is not one of them"):
        SealedStore.for_recovery(store.path, recovery.generate(), FakeClock()).snapshot()
    store.reseal([])  # back to the token alone: the format of a store without backups
    assert b'"recipients"' not in store.path.read_bytes()
    assert store.get(KP, "b") == b"secret b"
    with pytest.raises(StoreUnreadable):
        SealedStore.for_recovery(store.path, recovery.generate(), FakeClock()).snapshot()


def test_a_store_opened_by_a_recovery_key_is_read_only(tmp_path: Path, token: SealingKey) -> None:
    store, rec = _backed_up(tmp_path, token)
    with pytest.raises(HsmError, match="is not present"):
        SealedStore.for_recovery(store.path, rec, FakeClock()).put(KP, "c", b"x")
    assert store.get(KP, "b") == b"secret b"


def test_recovery_re_seals_to_a_new_primary_key(
    tmp_path: Path, token: SealingKey, softhsm: SoftHsmToken
) -> None:
    store, rec = _backed_up(tmp_path, token)
    snap = SealedStore.for_recovery(store.path, rec, FakeClock()).snapshot()
    scheme = "ecdh" if token.key_id.startswith("ecdh") else "aead"
    token.close()  # the old key is gone; a new one (here: a new key on the token) takes over
    new = open_token_key(
        softhsm.module_path,
        softhsm.label,
        "new-kek",
        softhsm.user_pin,
        scheme=scheme,
        create_key=True,
    )
    try:
        fresh = _store(store.path, new)
        fresh.adopt(snap, snap.backups)
        assert fresh.get(KP, "a") == b"secret a"
        assert fresh.recipients() == [new.key_id, rec.id]
        again = SealedStore.for_recovery(store.path, rec, FakeClock()).snapshot()
        assert len(again.records) == 2
    finally:
        new.close()
