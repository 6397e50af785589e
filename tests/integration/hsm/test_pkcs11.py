"""TokenKey against a real SoftHSM2 token (docs/threat-model.md T6, T7, T9, T21)."""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from typing import Any

import pkcs11
import pytest
from pkcs11 import Attribute, KeyType, Mechanism, MechanismFlag, ObjectClass
from pkcs11 import exceptions as pkerr

from vaultd.errors import (
    AuditTampered,
    HsmError,
    HsmKeyUnsafe,
    HsmPinIncorrect,
    RecordCorrupt,
    Sealed,
    StoreRollback,
    TokenAmbiguous,
    TokenNotFound,
)
from vaultd.keys.pkcs11 import GENERATION_LABEL, TokenKey
from vaultd.testing.softhsm import SoftHsmToken, create_token, reinitialize

OpenStore = Callable[..., TokenKey]
RawSession = Callable[..., AbstractContextManager[pkcs11.Session]]

pytestmark = pytest.mark.hsm

AAD = b"vaultd test aad"
SAFE_AES = {
    Attribute.TOKEN: True,
    Attribute.PRIVATE: True,
    Attribute.SENSITIVE: True,
    Attribute.EXTRACTABLE: False,
}


def _keys(session: pkcs11.Session, label: str) -> list[Any]:
    query = {Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.LABEL: label}
    return list(session.get_objects(query))


def _generations(session: pkcs11.Session) -> list[int]:
    query = {Attribute.CLASS: ObjectClass.DATA, Attribute.LABEL: GENERATION_LABEL}
    return sorted(int.from_bytes(o[Attribute.VALUE], "big") for o in session.get_objects(query))


def _add_generation(session: pkcs11.Session, raw: bytes) -> None:
    session.create_object(
        {
            Attribute.CLASS: ObjectClass.DATA,
            Attribute.TOKEN: True,
            Attribute.PRIVATE: True,
            Attribute.LABEL: GENERATION_LABEL,
            Attribute.VALUE: raw,
        }
    )


def test_round_trip_and_stable_key_id(open_vault: OpenStore) -> None:
    vault = open_vault(create_key=True)
    iv = vault.random(12)
    assert len(iv) == 12 and iv != vault.random(12)
    sealed = vault.encrypt(iv, b"secret access key", AAD)
    assert len(sealed) == len(b"secret access key") + 16
    assert b"secret access key" not in sealed
    assert vault.decrypt(iv, sealed, AAD) == b"secret access key"
    assert vault.decrypt(iv, vault.encrypt(iv, b"", AAD), AAD) == b""
    key_id = vault.key_id
    assert len(key_id) == 32 and int(key_id, 16) >= 0
    vault.close()

    again = open_vault()
    assert again.key_id == key_id
    assert again.decrypt(iv, sealed, AAD) == b"secret access key"


def test_bytearray_pin_opens(open_vault: OpenStore, softhsm: SoftHsmToken) -> None:
    vault = open_vault(create_key=True, pin=bytearray(softhsm.user_pin.encode()))
    assert vault.random(4) != b""


def test_wrong_pin_raises_and_leaves_vault_closed(
    open_vault: OpenStore, softhsm: SoftHsmToken
) -> None:
    open_vault(create_key=True).close()
    with pytest.raises(HsmPinIncorrect) as info:
        open_vault(pin="not-the-pin")
    assert info.value.code == "HSM_PIN_INCORRECT"
    assert info.value.count_low  # SoftHSM2 sets USER_PIN_COUNT_LOW after a failure
    assert not info.value.final_try
    assert "not-the-pin" not in str(info.value)
    assert softhsm.user_pin not in str(info.value)
    # Nothing stayed logged in: the right PIN still opens (a second login would fail).
    assert len(open_vault().random(8)) == 8


def test_missing_token_names_label_and_present_ones(
    open_vault: OpenStore, softhsm: SoftHsmToken
) -> None:
    with pytest.raises(TokenNotFound) as info:
        open_vault(label="no-such-token")
    assert "no-such-token" in str(info.value)
    assert softhsm.label in str(info.value)


def test_two_tokens_with_one_label_are_refused(
    open_vault: OpenStore, softhsm: SoftHsmToken
) -> None:
    create_token(softhsm.conf_path.parent, label=softhsm.label)
    reinitialize(softhsm.module_path)
    with pytest.raises(TokenAmbiguous):
        open_vault()


def test_missing_key_without_create(open_vault: OpenStore) -> None:
    with pytest.raises(HsmKeyUnsafe) as info:
        open_vault()
    assert info.value.attribute == "missing"


def test_create_then_reopen_finds_one_safe_key(
    open_vault: OpenStore, raw_session: RawSession, key_label: str
) -> None:
    open_vault(create_key=True).close()
    open_vault(create_key=True).close()  # idempotent: no second key
    open_vault().close()
    with raw_session(login=True) as session:
        (kek,) = _keys(session, key_label)
        (audit,) = _keys(session, f"{key_label}-audit")
        assert kek[Attribute.KEY_TYPE] == KeyType.AES
        assert kek[Attribute.VALUE_LEN] == 32
        for key in (kek, audit):
            assert key[Attribute.SENSITIVE] is True
            assert key[Attribute.EXTRACTABLE] is False
            assert key[Attribute.NEVER_EXTRACTABLE] is True
        assert audit[Attribute.KEY_TYPE] == KeyType.GENERIC_SECRET


def _extractable(s: pkcs11.Session, label: str) -> None:
    s.generate_key(
        KeyType.AES,
        256,
        label=label,
        store=True,
        template={**SAFE_AES, Attribute.EXTRACTABLE: True},
    )


def _not_sensitive(s: pkcs11.Session, label: str) -> None:
    s.generate_key(
        KeyType.AES, 256, label=label, store=True, template={**SAFE_AES, Attribute.SENSITIVE: False}
    )


def _once_readable(s: pkcs11.Session, label: str) -> None:
    key = s.generate_key(
        KeyType.AES, 256, label=label, store=True, template={**SAFE_AES, Attribute.SENSITIVE: False}
    )
    key[Attribute.SENSITIVE] = True  # allowed, but the key was exposed before


def _once_extractable(s: pkcs11.Session, label: str) -> None:
    key = s.generate_key(
        KeyType.AES,
        256,
        label=label,
        store=True,
        template={**SAFE_AES, Attribute.EXTRACTABLE: True},
    )
    key[Attribute.EXTRACTABLE] = False


def _aes128(s: pkcs11.Session, label: str) -> None:
    s.generate_key(KeyType.AES, 128, label=label, store=True, template=SAFE_AES)


def _generic_secret(s: pkcs11.Session, label: str) -> None:
    s.generate_key(
        KeyType.GENERIC_SECRET,
        256,
        label=label,
        store=True,
        capabilities=MechanismFlag.SIGN | MechanismFlag.VERIFY,
        template=SAFE_AES,
    )


def _wrapping(s: pkcs11.Session, label: str) -> None:
    caps = MechanismFlag.ENCRYPT | MechanismFlag.DECRYPT | MechanismFlag.WRAP
    s.generate_key(KeyType.AES, 256, label=label, store=True, capabilities=caps, template=SAFE_AES)


def _duplicate(s: pkcs11.Session, label: str) -> None:
    caps = MechanismFlag.ENCRYPT | MechanismFlag.DECRYPT
    for _ in range(2):
        s.generate_key(
            KeyType.AES, 256, label=label, store=True, capabilities=caps, template=SAFE_AES
        )


@pytest.mark.parametrize(
    ("make", "attribute"),
    [
        (_extractable, "EXTRACTABLE"),
        (_not_sensitive, "SENSITIVE"),
        (_once_readable, "ALWAYS_SENSITIVE"),
        (_once_extractable, "NEVER_EXTRACTABLE"),
        (_aes128, "VALUE_LEN"),
        (_generic_secret, "KEY_TYPE"),
        (_wrapping, "WRAP"),
        (_duplicate, "duplicate"),
    ],
)
def test_unsafe_key_is_refused(
    open_vault: OpenStore,
    raw_session: RawSession,
    make: Callable[[pkcs11.Session, str], None],
    key_label: str,
    attribute: str,
) -> None:
    with raw_session(login=True) as session:
        make(session, key_label)
    for create in (False, True):
        with pytest.raises(HsmKeyUnsafe) as info:
            open_vault(create_key=create)
        assert info.value.attribute == attribute
        assert attribute in str(info.value)


def test_unsafe_audit_key_is_refused(
    open_vault: OpenStore, raw_session: RawSession, key_label: str
) -> None:
    open_vault(create_key=True).close()
    with raw_session(login=True) as session:
        (audit,) = _keys(session, f"{key_label}-audit")
        audit.destroy()
        session.generate_key(
            KeyType.GENERIC_SECRET,
            256,
            label=f"{key_label}-audit",
            store=True,
            capabilities=MechanismFlag.SIGN | MechanismFlag.VERIFY,
            template={**SAFE_AES, Attribute.EXTRACTABLE: True},
        )
    with pytest.raises(HsmKeyUnsafe) as info:
        open_vault()
    assert info.value.attribute == "EXTRACTABLE"


def test_key_value_is_unreadable_and_unwrappable(
    open_vault: OpenStore, raw_session: RawSession, key_label: str
) -> None:
    open_vault(create_key=True)
    with raw_session() as session:  # PIN-less: sees private objects while the vault is open
        (kek,) = _keys(session, key_label)
        with pytest.raises(pkerr.AttributeSensitive):
            kek[Attribute.VALUE]
        wrapper = session.generate_key(
            KeyType.AES,
            256,
            capabilities=MechanismFlag.WRAP | MechanismFlag.UNWRAP,
            template={Attribute.TOKEN: False, Attribute.PRIVATE: False},
        )
        with pytest.raises(pkerr.KeyUnextractable):
            wrapper.wrap_key(kek)


def test_every_tamper_is_record_corrupt_and_session_survives(open_vault: OpenStore) -> None:
    vault = open_vault(create_key=True)
    iv = vault.random(12)
    sealed = vault.encrypt(iv, b"0123456789abcdef0123", AAD)

    def flipped(data: bytes, i: int) -> bytes:
        return data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1 :]

    cases = [(flipped(iv, i), sealed, AAD) for i in range(len(iv))]
    cases += [(iv, flipped(sealed, i), AAD) for i in range(len(sealed))]  # body and tag
    cases += [(iv, sealed, flipped(AAD, 0)), (iv, sealed, b""), (iv, sealed, AAD + b"x")]
    cases += [(iv[:11], sealed, AAD), (b"", sealed, AAD), (iv + b"\0", sealed, AAD)]
    cases += [(iv, sealed[:n], AAD) for n in (0, 11, 15)]
    cases += [(iv, sealed[:-1], AAD)]
    for bad_iv, bad_sealed, bad_aad in cases:
        with pytest.raises(RecordCorrupt):
            vault.decrypt(bad_iv, bad_sealed, bad_aad)
    assert vault.decrypt(iv, sealed, AAD) == b"0123456789abcdef0123"
    assert not vault.sealed


def test_generation_advances_and_never_goes_back(
    open_vault: OpenStore, raw_session: RawSession
) -> None:
    vault = open_vault(create_key=True)
    assert vault.read_generation() == 0
    vault.advance_generation(1)
    vault.advance_generation(5)
    assert vault.read_generation() == 5
    for stale in (5, 3, 0):
        with pytest.raises(StoreRollback):
            vault.advance_generation(stale)
    assert vault.read_generation() == 5
    with raw_session() as session:
        assert _generations(session) == [5]
        _add_generation(session, (4).to_bytes(8, "big"))  # a crash left an older object
        assert vault.read_generation() == 5
        vault.advance_generation(6)
        assert _generations(session) == [6]
    vault.close()
    assert open_vault().read_generation() == 6


def test_malformed_generation_object_is_refused(
    open_vault: OpenStore, raw_session: RawSession
) -> None:
    vault = open_vault(create_key=True)
    with raw_session() as session:
        _add_generation(session, b"\x01\x02")
    with pytest.raises(HsmError, match="8"):
        vault.read_generation()


def test_mac_round_trip(open_vault: OpenStore) -> None:
    vault = open_vault(create_key=True)
    tag = vault.mac(b"audit line 1")
    assert len(tag) == 32
    assert vault.mac(b"audit line 1") == tag
    assert vault.mac(b"audit line 2") != tag
    vault.mac_verify(b"audit line 1", tag)
    with pytest.raises(AuditTampered):
        vault.mac_verify(b"audit line 2", tag)
    with pytest.raises(AuditTampered):
        vault.mac_verify(b"audit line 1", bytes([tag[0] ^ 1]) + tag[1:])
    with pytest.raises(AuditTampered):
        vault.mac_verify(b"audit line 1", tag[:16])
    vault.close()
    open_vault().mac_verify(b"audit line 1", tag)  # the key persists in the token


def test_four_threads_share_one_session(open_vault: OpenStore) -> None:
    vault = open_vault(create_key=True)

    def worker(n: int) -> int:
        ok = 0
        for i in range(150):
            iv = vault.random(12)
            plain = f"thread {n} message {i}".encode() * (i % 7 + 1)
            aad = AAD + bytes([n, i % 256])
            if vault.decrypt(iv, vault.encrypt(iv, plain, aad), aad) == plain:
                ok += 1
        return ok

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(worker, range(4)))
    assert results == [150, 150, 150, 150]


def test_closed_vault_raises_sealed_everywhere(open_vault: OpenStore) -> None:
    vault = open_vault(create_key=True)
    iv = vault.random(12)
    sealed = vault.encrypt(iv, b"x", AAD)
    vault.close()
    vault.close()  # idempotent
    assert vault.sealed
    calls: list[Callable[[], object]] = [
        lambda: vault.random(12),
        lambda: vault.encrypt(iv, b"x", AAD),
        lambda: vault.decrypt(iv, sealed, AAD),
        lambda: vault.mac(b"x"),
        lambda: vault.mac_verify(b"x", bytes(32)),
        vault.read_generation,
        lambda: vault.advance_generation(9),
        vault.inspect,
    ]
    for call in calls:
        with pytest.raises(Sealed):
            call()


class ScriptedKey:
    """A fake token key that fails as a removed device would.

    SoftHSM2 cannot be unplugged, so the fault is injected at the session boundary.
    """

    def __init__(self, error: type[pkerr.PKCS11Error]) -> None:
        self.error = error
        self.calls = 0

    def __getitem__(self, key: Attribute) -> Any:
        raise self.error()

    def encrypt(self, data: bytes, *, mechanism: Mechanism, mechanism_param: Any) -> bytes:
        self.calls += 1
        raise self.error()

    def decrypt(self, data: bytes, *, mechanism: Mechanism, mechanism_param: Any) -> bytes:
        self.calls += 1
        raise self.error()


@pytest.mark.parametrize(
    "error",
    [
        pkerr.DeviceRemoved,
        pkerr.TokenNotPresent,
        pkerr.SessionHandleInvalid,
        pkerr.DeviceError,
        pkerr.SessionClosed,
        pkerr.GeneralError,
        pkerr.PKCS11Error,  # what python-pkcs11 raises for CKR_CRYPTOKI_NOT_INITIALIZED
    ],
)
def test_device_failure_seals_for_good(
    open_vault: OpenStore, monkeypatch: pytest.MonkeyPatch, error: type[pkerr.PKCS11Error]
) -> None:
    vault = open_vault(create_key=True)
    iv = vault.random(12)
    key = ScriptedKey(error)
    assert vault._state is not None
    monkeypatch.setattr(vault._state, "kek", key)
    with pytest.raises(Sealed) as info:
        vault.encrypt(iv, b"x", AAD)
    assert "vaultd unlock" in str(info.value)
    assert vault.sealed
    for call in (lambda: vault.encrypt(iv, b"x", AAD), lambda: vault.random(12)):
        with pytest.raises(Sealed):
            call()
    assert key.calls == 1  # nothing reached the device after the failure
    # The real session was logged out and closed: a fresh unlock works.
    assert len(open_vault().random(4)) == 4


def test_device_removed_during_decrypt_is_sealed_not_corrupt(
    open_vault: OpenStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    vault = open_vault(create_key=True)
    iv = vault.random(12)
    sealed = vault.encrypt(iv, b"x", AAD)
    assert vault._state is not None
    monkeypatch.setattr(vault._state, "kek", ScriptedKey(pkerr.DeviceRemoved))
    with pytest.raises(Sealed):
        vault.decrypt(iv, sealed, AAD)
    with pytest.raises(Sealed):
        vault.decrypt(iv, sealed, AAD)


def test_inspect_reports_attributes_without_secrets(
    open_vault: OpenStore, softhsm: SoftHsmToken, key_label: str
) -> None:
    vault = open_vault(create_key=True)
    info = vault.inspect()
    assert info["token_label"] == softhsm.label
    assert info["key_label"] == key_label
    assert info["key_id"] == vault.key_id
    key_attrs = info["key_attributes"]
    assert isinstance(key_attrs, dict)
    assert key_attrs["SENSITIVE"] is True and key_attrs["EXTRACTABLE"] is False
    assert key_attrs["KEY_TYPE"] == "AES"
    assert "USER_PIN_INITIALIZED" in str(info["token_flags"])
    text = json.dumps(info)
    assert softhsm.user_pin not in text and softhsm.so_pin not in text


def test_a_softhsm_token_not_found_names_softhsm2_conf(
    open_vault: OpenStore, softhsm: SoftHsmToken
) -> None:
    """The walk-through's case: the token exists, but this shell's SOFTHSM2_CONF differs from
    the one it was made with; empty slots are not listed as tokens."""
    with pytest.raises(TokenNotFound) as info:
        open_vault(label="no-such-token")
    message = str(info.value)
    assert f"SOFTHSM2_CONF ({softhsm.conf_path})" in message, message
    assert "''" not in message
