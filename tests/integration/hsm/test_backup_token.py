"""A second SoftHSM2 token as a backup recipient (issue 14 item 5): it opens and checks the
store alone, sealing to it needs only its public point, and a store forged with that point is
refused.  Both tokens are real, in one SOFTHSM2_CONF."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import pytest

from vaultd.core.model import RecordKind
from vaultd.core.ports import SealingKey
from vaultd.errors import AuditTampered, HsmError, HsmKeyUnsafe, HsmPinIncorrect, StoreUnreadable
from vaultd.keys import backup_token
from vaultd.keys.backup_token import BackupToken
from vaultd.keys.recovery import TOKEN_KIND, Backup
from vaultd.store.files import SealedStore
from vaultd.testing.clock import FakeClock
from vaultd.testing.fakes import FakeGenerationAnchor, FakeKeyWrapper
from vaultd.testing.softhsm import SoftHsmToken, create_token, reinitialize

pytestmark = pytest.mark.hsm

KP = RecordKind.KEY_PAIR
BACKUP_KEY = "vaultd-backup"


@pytest.fixture
def second(softhsm: SoftHsmToken) -> SoftHsmToken:
    """A second token in the same SoftHSM2 configuration."""
    token = create_token(softhsm.conf_path.parent, label="vaultd-backup-token")
    reinitialize(token.module_path)
    return token


def _open_backup(second: SoftHsmToken, pin: str | None = None) -> BackupToken:
    return BackupToken.open(
        second.module_path,
        second.label,
        second.user_pin if pin is None else pin,
        key_label=BACKUP_KEY,
        create_key=True,
    )


@pytest.fixture
def primary(second: SoftHsmToken, token: SealingKey) -> SealingKey:
    """The vault's key under each scheme (conftest's ``token``), made after ``second`` exists."""
    return token


def _enrolled(tmp_path: Path, primary: SealingKey, second: SoftHsmToken) -> SealedStore:
    store = SealedStore(
        tmp_path / "store.vault", primary, primary, FakeClock(), authenticator=primary
    )
    store.initialize()
    store.put(KP, "a", b"secret a")
    token = _open_backup(second)
    try:
        backup = token.backup()
    finally:
        token.close()  # sealing to it from now on needs only its public point
    store.reseal([backup])
    store.put(KP, "b", b"secret b")
    return store


def test_the_backup_token_alone_opens_and_checks_every_record(
    tmp_path: Path, primary: SealingKey, second: SoftHsmToken
) -> None:
    store = _enrolled(tmp_path, primary, second)
    assert store.get(KP, "b") == b"secret b"
    token = _open_backup(second)
    try:
        assert store.recipients() == [primary.key_id, token.id]
        assert token.id.startswith(f"{TOKEN_KIND}:")
        primary.close()  # the vault's token is gone
        snap = SealedStore.for_recovery(store.path, token, FakeClock()).snapshot()
    finally:
        token.close()
    assert [(i.name, text) for i, text in snap.records] == [("a", b"secret a"), ("b", b"secret b")]
    [backup] = snap.backups
    assert backup.token is not None and backup.token.label == second.label
    assert backup.token.key == BACKUP_KEY and backup.id == token.id


class _ForgerMac:
    """The forger's own index tag: an HMAC under a key of theirs (software, by design)."""

    _key = b"forger" * 6

    def mac(self, data: bytes) -> bytes:
        return hmac.new(self._key, data, hashlib.sha256).digest()

    def mac_verify(self, data: bytes, tag: bytes) -> None:
        if not hmac.compare_digest(self.mac(data), tag):
            raise AuditTampered("forger's tag")


def test_a_store_forged_with_the_public_point_is_refused_by_the_backup_token(
    tmp_path: Path, second: SoftHsmToken
) -> None:
    """The forger has the backup's public point and location (the store file's), not its key:
    they seal records to it under a primary of their own (a software key) and a K they chose."""
    token = _open_backup(second)
    try:
        real = token.backup()
        forged_backup = Backup(real.point, bytes(32), real.token)
        forger = FakeKeyWrapper()
        forged = SealedStore(
            tmp_path / "store.vault",
            forger,
            FakeGenerationAnchor(),
            FakeClock(),
            authenticator=_ForgerMac(),
        )
        forged.initialize([forged_backup])
        forged.put(KP, "a", b"attacker's key")
        with pytest.raises(StoreUnreadable, match="tag by the backup token"):
            SealedStore.for_recovery(forged.path, token, FakeClock()).snapshot()
    finally:
        token.close()


def test_an_edited_or_malformed_backup_location_is_refused(
    tmp_path: Path, primary: SealingKey, second: SoftHsmToken
) -> None:
    store = _enrolled(tmp_path, primary, second)
    body = json.loads(store.path.read_bytes().partition(b"\n")[2])
    entry = next(e for e in body["recipients"] if "token" in e)
    token = _open_backup(second)
    try:
        for location, error in (
            ({**entry["token"], "module": "/tmp/evil.so"}, "tag by the backup token"),
            ({"module": "/tmp/evil.so"}, "backup token must be an object"),
            ({**entry["token"], "key": ""}, "not a non-empty string"),
        ):
            entry["token"] = location
            store.path.write_bytes(b"VAULTD-STORE 1\n" + json.dumps(body).encode())
            with pytest.raises(StoreUnreadable, match=error):
                SealedStore.for_recovery(store.path, token, FakeClock()).snapshot()
    finally:
        token.close()


def test_a_key_missing_from_the_backup_token_is_named(second: SoftHsmToken) -> None:
    with pytest.raises(HsmKeyUnsafe, match=r"holds no P-256 key 'absent'.*vaultd keys add"):
        BackupToken.open(second.module_path, second.label, second.user_pin, key_label="absent")


def test_a_wrong_pin_is_one_refused_login(second: SoftHsmToken) -> None:
    with pytest.raises(HsmPinIncorrect) as info:
        _open_backup(second, pin="not-the-pin")
    assert "not-the-pin" not in str(info.value) and "\n" not in str(info.value)
    token = _open_backup(second)  # nothing stayed logged in: the right PIN opens
    token.close()


class _NoEcdhSlot:
    """Mock: no installed module lacks ECDH here, so the real slot's mechanism list is cut."""

    def __init__(self, slot: Any) -> None:
        self._slot = slot

    def get_mechanisms(self) -> set[Any]:
        from pkcs11 import Mechanism

        return set(self._slot.get_mechanisms()) - {Mechanism.ECDH1_DERIVE}


class _Token:
    def __init__(self, token: Any) -> None:
        self._token = token
        self.slot = _NoEcdhSlot(token.slot)
        self.label = token.label

    def __getattr__(self, name: str) -> Any:
        return getattr(self._token, name)


def test_a_token_without_ecdh_is_refused_before_any_login(
    second: SoftHsmToken, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = backup_token._find_again
    monkeypatch.setattr(backup_token, "_find_again", lambda *a: _Token(real(*a)))
    with pytest.raises(HsmError, match=r"does not offer CKM_ECDH1_DERIVE \(ECDH\)"):
        _open_backup(second, pin="not-the-pin")  # no login tried: no PIN error
