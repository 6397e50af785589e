"""docs/threat-model.md T8 / G11: the per-key encryption counter in the token and the hard stop at
2^30.

Real SoftHSM2 throughout; the counter objects are read and planted with python-pkcs11 directly.
Only the reservation-write failure uses :class:`~vaultd.testing.faulty_pkcs11.FaultyPkcs11`:
SoftHSM2 cannot be made to refuse ``C_CreateObject`` on a healthy token.

``VAULTD_IV_ENCRYPTIONS`` sets the property test's count (default 100,000, the G11 figure).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import AbstractContextManager

import pkcs11
import pytest
from pkcs11 import Attribute, ObjectClass
from pkcs11 import exceptions as pkerr

from vaultd.core import envelope
from vaultd.errors import HsmError, KeyUsageExhausted
from vaultd.keys.pkcs11 import (
    ENCRYPTION_BLOCK,
    ENCRYPTION_LIMIT,
    TokenKey,
    encryptions_label,
)
from vaultd.testing.faulty_pkcs11 import FaultyPkcs11
from vaultd.testing.softhsm import SoftHsmToken

OpenStore = Callable[..., TokenKey]
RawSession = Callable[..., AbstractContextManager[pkcs11.Session]]

pytestmark = pytest.mark.hsm

ENCRYPTIONS = int(os.environ.get("VAULTD_IV_ENCRYPTIONS", "100000"))
OPENS = 5


def _seal(vault: TokenKey, data: bytes) -> bytes:
    """Seal as the store does: the IV comes from the token through ``random(12)``."""
    return envelope.seal(vault, data, kind="access_key", name="prod", generation=1)


def _unseal(vault: TokenKey, blob: bytes) -> bytes:
    return envelope.unseal(vault, blob, kind="access_key", name="prod", generation=1)


def _counters(session: pkcs11.Session, key_id: str) -> list[int]:
    """The values of the key's counter objects, read straight from the token."""
    objs = session.get_objects({Attribute.LABEL: encryptions_label(key_id)})
    return sorted(int.from_bytes(o[Attribute.VALUE], "big") for o in objs)


def _plant(session: pkcs11.Session, key_id: str, value: bytes) -> None:
    """Replace the key's counter objects by one holding ``value``."""
    for obj in list(session.get_objects({Attribute.LABEL: encryptions_label(key_id)})):
        obj.destroy()
    session.create_object(
        {
            Attribute.CLASS: ObjectClass.DATA,
            Attribute.TOKEN: True,
            Attribute.PRIVATE: True,
            Attribute.LABEL: encryptions_label(key_id),
            Attribute.VALUE: value,
        }
    )


def _reopen(vault: TokenKey, open_vault: OpenStore) -> TokenKey:
    vault.close()
    return open_vault()


@pytest.fixture
def key_id(open_vault: OpenStore) -> str:
    """Create the vault's keys, then close the vault (tests open their own)."""
    vault = open_vault(create_key=True)
    vault.close()
    return vault.key_id


def test_distinct_ivs_and_monotonic_counter_across_reopens(
    open_vault: OpenStore, raw_session: RawSession, key_id: str
) -> None:
    """G11: no IV repeats across re-opens; the token count covers every encryption."""
    ivs: set[bytes] = set()
    per_open = [ENCRYPTIONS // OPENS + (i < ENCRYPTIONS % OPENS) for i in range(OPENS)]
    stored = 0
    done = 0
    for n in per_open:
        vault = open_vault()
        for _ in range(n):
            blob = _seal(vault, b"secret")
            ivs.add(envelope.parse_header(blob).iv)
        done += n
        info = vault.inspect()
        assert info["encryptions"] == stored + n
        vault.close()
        with raw_session(login=True) as session:
            values = _counters(session, key_id)
        assert len(values) == 1  # the old reservation was destroyed after the new one
        blocks = -(-n // ENCRYPTION_BLOCK)
        assert values[0] == stored + blocks * ENCRYPTION_BLOCK  # never backwards, no gaps
        stored = values[0]
        assert stored >= done
    assert len(ivs) == ENCRYPTIONS


def test_reservation_is_written_before_the_block_is_used(
    open_vault: OpenStore, raw_session: RawSession, key_id: str
) -> None:
    """A crash (no close) after one encryption still leaves a full block counted in the token."""
    vault = open_vault()
    _seal(vault, b"secret")
    with raw_session() as session:  # PIN-less: sees private objects while the vault is logged in
        assert _counters(session, key_id) == [ENCRYPTION_BLOCK]
    for _ in range(ENCRYPTION_BLOCK):
        _seal(vault, b"secret")
    with raw_session() as session:
        assert _counters(session, key_id) == [2 * ENCRYPTION_BLOCK]
    assert vault.inspect()["encryptions"] == ENCRYPTION_BLOCK + 1


def test_hard_stop_at_the_limit_survives_reopen(
    open_vault: OpenStore, raw_session: RawSession, key_label: str, key_id: str
) -> None:
    vault = open_vault()
    blob = _seal(vault, b"old secret")
    vault.close()
    with raw_session(login=True) as session:
        _plant(session, key_id, (ENCRYPTION_LIMIT - 2).to_bytes(8, "big"))

    vault = open_vault()
    assert vault.inspect()["encryptions"] == ENCRYPTION_LIMIT - 2
    _seal(vault, b"a")
    _seal(vault, b"b")
    with pytest.raises(KeyUsageExhausted) as caught:
        vault.encrypt(vault.random(12), b"c", b"aad")
    assert caught.value.code == "HSM_KEY_EXHAUSTED"
    assert caught.value.key_label == key_label and not caught.value.corrupt
    message = str(caught.value)
    assert repr(key_label) in message and "2^30 records" in message
    assert "pkcs11.key_label" in message and "vaultd init" in message
    with pytest.raises(KeyUsageExhausted):  # envelope.seal returns no blob either
        _seal(vault, b"c")
    assert _unseal(vault, blob) == b"old secret"
    assert vault.inspect()["encryptions"] == vault.inspect()["encryption_limit"]

    vault = _reopen(vault, open_vault)
    with pytest.raises(KeyUsageExhausted):
        _seal(vault, b"d")
    assert _unseal(vault, blob) == b"old secret"
    with raw_session() as session:
        assert _counters(session, key_id) == [ENCRYPTION_LIMIT]


@pytest.mark.parametrize("value", [b"", b"\x00" * 7, b"\x00" * 9])
def test_malformed_counter_refuses_and_is_kept(
    open_vault: OpenStore, raw_session: RawSession, key_id: str, value: bytes
) -> None:
    vault = open_vault()
    blob = _seal(vault, b"old secret")
    vault.close()
    with raw_session(login=True) as session:
        _plant(session, key_id, value)

    vault = open_vault()
    with pytest.raises(KeyUsageExhausted, match="HSM/token corruption") as caught:
        _seal(vault, b"new")
    assert caught.value.corrupt
    assert _unseal(vault, blob) == b"old secret"
    with pytest.raises(KeyUsageExhausted, match="corrupt"):
        vault.inspect()
    with raw_session() as session:  # not reset, not replaced
        objs = list(session.get_objects({Attribute.LABEL: encryptions_label(key_id)}))
        assert [o[Attribute.VALUE] for o in objs] == [value]


def test_counter_object_of_the_wrong_class_refuses(
    open_vault: OpenStore, raw_session: RawSession, key_id: str
) -> None:
    """Something other than a data object under the counter's label is corruption too."""
    with raw_session(login=True) as session:
        session.generate_key(pkcs11.KeyType.AES, 128, label=encryptions_label(key_id), store=True)
    vault = open_vault()
    with pytest.raises(KeyUsageExhausted, match="HSM/token corruption"):
        _seal(vault, b"new")


def test_two_counter_objects_take_the_highest(
    open_vault: OpenStore, raw_session: RawSession, key_id: str
) -> None:
    """A crash between creating the new reservation and destroying the old leaves two."""
    with raw_session(login=True) as session:
        _plant(session, key_id, (5 * ENCRYPTION_BLOCK).to_bytes(8, "big"))
        session.create_object(
            {
                Attribute.CLASS: ObjectClass.DATA,
                Attribute.TOKEN: True,
                Attribute.PRIVATE: True,
                Attribute.LABEL: encryptions_label(key_id),
                Attribute.VALUE: (2 * ENCRYPTION_BLOCK).to_bytes(8, "big"),
            }
        )
    vault = open_vault()
    _seal(vault, b"new")
    with raw_session() as session:
        assert _counters(session, key_id) == [6 * ENCRYPTION_BLOCK]


def test_regenerated_key_gets_its_own_counter(
    open_vault: OpenStore, raw_session: RawSession, key_label: str, key_id: str
) -> None:
    """The counter is bound to the key id: a new key under the old label starts its own count."""
    with raw_session(login=True) as session:
        _plant(session, key_id, ENCRYPTION_LIMIT.to_bytes(8, "big"))
        query = {Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.LABEL: key_label}
        session.get_key(object_class=ObjectClass.SECRET_KEY, label=key_label).destroy()
        assert not list(session.get_objects(query))
    vault = open_vault(create_key=True)
    assert vault.key_id != key_id
    _seal(vault, b"x")
    with raw_session() as session:
        assert _counters(session, key_id) == [ENCRYPTION_LIMIT]  # the old key's stays
        assert _counters(session, vault.key_id) == [ENCRYPTION_BLOCK]


def test_failed_reservation_write_refuses_and_seals_nothing(
    softhsm: SoftHsmToken, key_label: str, raw_session: RawSession, key_id: str
) -> None:
    """Fake: SoftHSM2 cannot be made to refuse C_CreateObject, so FaultyPkcs11 scripts it."""
    faulty = FaultyPkcs11(softhsm.module_path)
    with faulty.installed():
        vault = TokenKey.open(softhsm.module_path, softhsm.label, key_label, softhsm.user_pin)
    try:
        faulty.fail("create", pkerr.TokenWriteProtected)
        with pytest.raises(HsmError) as caught:
            _seal(vault, b"secret")
        assert not isinstance(caught.value, KeyUsageExhausted)
        assert faulty.calls["encrypt"] == 0  # nothing reached the key
        with raw_session() as session:
            assert _counters(session, key_id) == []
        _seal(vault, b"secret")  # the next reservation succeeds
        assert faulty.calls["encrypt"] == 1
        with raw_session() as session:
            assert _counters(session, key_id) == [ENCRYPTION_BLOCK]
    finally:
        vault.close()
