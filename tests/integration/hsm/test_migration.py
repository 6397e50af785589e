"""A store made by the release before the sealing schemes opens with this one (issue 14).

The fixture (`tests/vectors/store-v1-token-aead/`) is a SoftHSM2 token directory, store and
audit log written once by vaultd at commit 9bc6397; see its README.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from vaultd.app import open_token_key
from vaultd.core.model import RecordKind
from vaultd.errors import ConfigError, StoreUnreadable
from vaultd.keys import recovery
from vaultd.store.audit import AuditLog, verify
from vaultd.store.files import SealedStore
from vaultd.testing.clock import FakeClock
from vaultd.testing.softhsm import create_token, find_softhsm_module, reinitialize, write_conf

pytestmark = pytest.mark.hsm

FIXTURE = Path(__file__).parents[2] / "vectors" / "store-v1-token-aead"
PIN = "fixture-pin-1234"  # a throwaway test PIN (see the fixture's README)
KEY_ID = "52adf34e1470de7fde7663f3b3f319e9"


def _previous_release(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Path]:
    """The fixture's token and data dir copied into ``tmp_path``; the module and data dir."""
    module = find_softhsm_module()
    if module is None:
        pytest.skip("SoftHSM2 is not installed")
    conf = write_conf(tmp_path / "softhsm")
    shutil.copytree(FIXTURE / "tokens", tmp_path / "softhsm" / "tokens", dirs_exist_ok=True)
    data = tmp_path / "data"
    shutil.copytree(FIXTURE / "data", data)
    data.chmod(0o700)
    for file in data.iterdir():
        file.chmod(0o600)
    monkeypatch.setenv("SOFTHSM2_CONF", str(conf))
    reinitialize(module)
    return module, data


def test_a_token_aead_store_of_the_previous_release_opens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module, data = _previous_release(tmp_path, monkeypatch)
    key = open_token_key(module, "vaultd-v1", "vaultd-kek", PIN)  # scheme auto
    try:
        assert key.key_id == KEY_ID
        store = SealedStore(data / "store.vault", key, key, FakeClock())
        assert store.get(RecordKind.KEY_PAIR, "legacy") == b"fixture plaintext, not a secret"
        assert verify(data / "audit.log", key.mac_verify) == 2  # the old log keeps verifying
        store.put(RecordKind.KEY_PAIR, "new", b"after the upgrade")
        AuditLog(data / "audit.log", key.mac, FakeClock(), mac_verify=key.mac_verify).record(
            "release", {"profile": "new"}
        )
        assert verify(data / "audit.log", key.mac_verify) == 3
        assert store.names(RecordKind.KEY_PAIR) == ["legacy", "new"]
    finally:
        key.close()


def test_a_store_of_the_previous_release_is_re_sealed_to_a_recovery_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module, data = _previous_release(tmp_path, monkeypatch)
    rec = recovery.generate()
    key = open_token_key(module, "vaultd-v1", "vaultd-kek", PIN)
    try:
        store = SealedStore(data / "store.vault", key, key, FakeClock(), authenticator=key)
        store.reseal([rec.backup()])
        assert store.recipients() == [KEY_ID, rec.id]
        assert store.get(RecordKind.KEY_PAIR, "legacy") == b"fixture plaintext, not a secret"
    finally:
        key.close()
    snap = SealedStore.for_recovery(data / "store.vault", rec, FakeClock()).snapshot()
    assert snap.records[0][1] == b"fixture plaintext, not a secret"


def test_a_store_of_the_previous_release_moves_to_an_ecdh_key_on_another_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`vaultd rekey --module --token-label` at the store level: one write sealed to the new
    token and the old one; each opens every record, and the new token's first write drops the
    old one."""
    module, data = _previous_release(tmp_path, monkeypatch)
    other = create_token(tmp_path / "softhsm", label="moved")
    reinitialize(module)
    old = open_token_key(module, "vaultd-v1", "vaultd-kek", PIN)
    new = open_token_key(module, "moved", "k", other.user_pin, scheme="ecdh", create_key=True)
    try:
        old_store = SealedStore(data / "store.vault", old, old, FakeClock(), authenticator=old)
        snap = old_store.snapshot()
        new_store = SealedStore(data / "store.vault", new, new, FakeClock(), authenticator=new)
        new_store.move_to(snap, snap.backups, old)
        assert new_store.recipients() == [new.key_id, KEY_ID]
        for store in (old_store, new_store):
            assert store.get(RecordKind.KEY_PAIR, "legacy") == b"fixture plaintext, not a secret"
        with pytest.raises(ConfigError, match="has moved to token key ecdh-p256:"):
            old_store.put(RecordKind.KEY_PAIR, "x", b"refused")
        new_store.put(RecordKind.KEY_PAIR, "new", b"after the move")
        assert new_store.recipients() == [new.key_id]
        with pytest.raises(StoreUnreadable, match="sealed under key id"):
            old_store.list()
    finally:
        old.close()
        new.close()
