"""The token ECDH scheme against a real SoftHSM2 token (issue 14; docs/threat-model.md T6, T7, T21).

SoftHSM2 has EC P-256 key generation and ECDH1_DERIVE with CKD_NULL, as the PIV family does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pkcs11
import pytest
from pkcs11 import Attribute, ObjectClass
from pkcs11 import exceptions as pkerr

from vaultd.app import open_token_key
from vaultd.core.envelope import ALG_ECDH_P256, parse_header, seal, unseal
from vaultd.core.model import RecordKind
from vaultd.errors import AuditRecordTampered, HsmKeyUnsafe, RecordCorrupt, Sealed, StoreUnreadable
from vaultd.keys import ecdh
from vaultd.keys.ecdh import SIGNATURE_PREFIX, EcdhTokenKey
from vaultd.keys.pkcs11 import TokenKey
from vaultd.keys.schemes import choose_scheme
from vaultd.store.audit import AuditLog, verify
from vaultd.store.files import SealedStore
from vaultd.testing.clock import FakeClock
from vaultd.testing.softhsm import SoftHsmToken, create_token, reinitialize

pytestmark = pytest.mark.hsm

OpenEcdh = Callable[..., EcdhTokenKey]
BINDING = {"kind": "key-pair", "name": "prod", "generation": 7, "context": b"ctx"}


@pytest.fixture
def open_ecdh(softhsm: SoftHsmToken, key_label: str) -> Iterator[OpenEcdh]:
    """Open an ECDH vault key on the test token; every one opened is closed at teardown."""
    opened: list[EcdhTokenKey] = []

    def _open(*, create_key: bool = True, label: str | None = None, **kw: object) -> EcdhTokenKey:
        vault = EcdhTokenKey.open(
            softhsm.module_path,
            label or softhsm.label,
            key_label,
            softhsm.user_pin,
            create_key=create_key,
            **kw,  # type: ignore[arg-type]
        )
        opened.append(vault)
        return vault

    yield _open
    for vault in opened:
        vault.close()


def test_round_trip_binds_the_scheme_and_the_public_key(open_ecdh: OpenEcdh) -> None:
    vault = open_ecdh()
    blob = seal(vault, b"secret", **BINDING)  # type: ignore[arg-type]
    header = parse_header(blob)
    assert header.algorithm == ALG_ECDH_P256
    assert vault.key_id.startswith("ecdh-p256:") and header.key_id == vault.key_id
    assert unseal(vault, blob, **BINDING) == b"secret"  # type: ignore[arg-type]
    key_id = vault.key_id
    vault.close()
    again = open_ecdh(create_key=False)
    assert again.key_id == key_id  # the id is the public key's, stable across sessions
    assert unseal(again, blob, **BINDING) == b"secret"  # type: ignore[arg-type]


def test_every_byte_flip_is_record_corrupt(open_ecdh: OpenEcdh) -> None:
    vault = open_ecdh()
    blob = seal(vault, b"0123456789", **BINDING)  # type: ignore[arg-type]
    for i in range(len(blob)):  # header, IV, ephemeral point, ciphertext and tag
        bad = bytearray(blob)
        bad[i] ^= 0x01
        with pytest.raises(RecordCorrupt):
            unseal(vault, bytes(bad), **BINDING)  # type: ignore[arg-type]
    for cut in (len(blob) - 1, len(blob) - 16, len(blob) - 30):
        with pytest.raises(RecordCorrupt):
            unseal(vault, blob[:cut], **BINDING)  # type: ignore[arg-type]
    with pytest.raises(RecordCorrupt):
        unseal(vault, blob, **{**BINDING, "name": "other"})  # type: ignore[arg-type]
    assert unseal(vault, blob, **BINDING) == b"0123456789"  # the session survived


def test_point_off_the_curve_is_refused_before_the_token(
    open_ecdh: OpenEcdh, monkeypatch: pytest.MonkeyPatch
) -> None:
    vault = open_ecdh()
    iv = vault.random(12)
    body = vault.encrypt(iv, b"x", b"aad")
    calls: list[bytes] = []
    monkeypatch.setattr(ecdh, "_derive", lambda key, point: calls.append(point) or b"")
    for bad_point in (b"\x04" + b"\x00" * 64, b"\x02" + body[1:65]):
        with pytest.raises(RecordCorrupt):
            vault.decrypt(iv, bad_point + body[65:], b"aad")
    assert calls == []


def test_downgrade_between_schemes_is_refused(
    open_ecdh: OpenEcdh, softhsm: SoftHsmToken, key_label: str
) -> None:
    ecdh_key = open_ecdh()
    ecdh_blob = seal(ecdh_key, b"secret", **BINDING)  # type: ignore[arg-type]
    ecdh_key.close()
    aead = TokenKey.open(
        softhsm.module_path, softhsm.label, "aead-kek", softhsm.user_pin, create_key=True
    )
    try:
        with pytest.raises(RecordCorrupt, match="ecdh-p256:"):
            unseal(aead, ecdh_blob, **BINDING)  # type: ignore[arg-type]
        aead_blob = seal(aead, b"s" * 80, **BINDING)  # type: ignore[arg-type]
        # A blob that claims the ECDH algorithm under a token AEAD key id is refused.
        forged = bytearray(aead_blob)
        forged[5] = ALG_ECDH_P256
        with pytest.raises(RecordCorrupt, match="never uses"):
            unseal(aead, bytes(forged), **BINDING)  # type: ignore[arg-type]
    finally:
        aead.close()
    again = open_ecdh(create_key=False)
    with pytest.raises(RecordCorrupt, match=aead.key_id):
        unseal(again, aead_blob, **BINDING)  # type: ignore[arg-type]


def test_store_of_one_scheme_does_not_open_under_the_other(
    open_ecdh: OpenEcdh, softhsm: SoftHsmToken, tmp_path: Path
) -> None:
    path = tmp_path / "data" / "store.vault"
    vault = open_ecdh()
    store = SealedStore(path, vault, vault, FakeClock(), authenticator=vault)
    store.initialize()
    store.put(RecordKind.KEY_PAIR, "prod", b"secret")
    assert store.get(RecordKind.KEY_PAIR, "prod") == b"secret"
    vault.close()
    aead = TokenKey.open(
        softhsm.module_path, softhsm.label, "aead-kek", softhsm.user_pin, create_key=True
    )
    try:
        with pytest.raises(StoreUnreadable, match="ecdh-p256:"):
            SealedStore(path, aead, aead, FakeClock()).list()
    finally:
        aead.close()


def test_wrong_token_is_refused_naming_the_key(
    open_ecdh: OpenEcdh, softhsm: SoftHsmToken, key_label: str, tmp_path: Path
) -> None:
    vault = open_ecdh()
    blob = seal(vault, b"secret", **BINDING)  # type: ignore[arg-type]
    key_id = vault.key_id
    vault.close()
    second = create_token(tmp_path / "softhsm", label="other")
    reinitialize(softhsm.module_path)
    other = EcdhTokenKey.open(
        softhsm.module_path, "other", key_label, second.user_pin, create_key=True
    )
    try:
        assert other.key_id != key_id
        with pytest.raises(RecordCorrupt, match=key_id):
            unseal(other, blob, **BINDING)  # type: ignore[arg-type]
    finally:
        other.close()


def test_key_is_sensitive_and_never_extractable(open_ecdh: OpenEcdh, key_label: str) -> None:
    vault = open_ecdh()
    attrs = vault.inspect()["key_attributes"]
    assert attrs == {
        "TOKEN": True,
        "PRIVATE": True,
        "SENSITIVE": True,
        "EXTRACTABLE": False,
        "ALWAYS_SENSITIVE": True,
        "NEVER_EXTRACTABLE": True,
    }
    assert vault._state is not None
    with pytest.raises(pkerr.AttributeSensitive):
        vault._state.private_key[Attribute.VALUE]


def test_no_derived_secret_is_left_in_the_token(open_ecdh: OpenEcdh, softhsm: SoftHsmToken) -> None:
    vault = open_ecdh()
    iv = vault.random(12)
    for _ in range(3):
        assert vault.decrypt(iv, vault.encrypt(iv, b"x", b"a"), b"a") == b"x"
    assert vault._state is not None
    secrets = list(vault._state.session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY}))
    assert [s[Attribute.LABEL] for s in secrets] == [f"{vault.inspect()['key_label']}-audit"]


def test_extractable_key_is_refused(softhsm: SoftHsmToken, key_label: str) -> None:
    token = pkcs11.lib(softhsm.module_path).get_token(token_label=softhsm.label)
    with token.open(rw=True, user_pin=softhsm.user_pin) as session:
        params = session.create_domain_parameters(
            pkcs11.KeyType.EC, {Attribute.EC_PARAMS: ecdh._P256}, local=True
        )
        params.generate_keypair(
            store=True,
            id=b"x",
            label=key_label,
            private_template={Attribute.EXTRACTABLE: True, Attribute.SENSITIVE: True},
        )
    with pytest.raises(HsmKeyUnsafe, match="EXTRACTABLE") as info:
        EcdhTokenKey.open(softhsm.module_path, softhsm.label, key_label, softhsm.user_pin)
    assert info.value.attribute == "EXTRACTABLE"


def test_token_lost_mid_open_seals(open_ecdh: OpenEcdh, softhsm: SoftHsmToken) -> None:
    vault = open_ecdh()
    iv = vault.random(12)
    body = vault.encrypt(iv, b"secret", b"a")
    reinitialize(softhsm.module_path)  # the module drops every session, as on removal
    with pytest.raises(Sealed):
        vault.decrypt(iv, body, b"a")
    assert vault.sealed
    with pytest.raises(Sealed):
        vault.encrypt(iv, b"x", b"a")


def test_device_removed_during_derive_is_sealed_not_corrupt(
    open_ecdh: OpenEcdh, monkeypatch: pytest.MonkeyPatch
) -> None:
    vault = open_ecdh()
    iv = vault.random(12)
    body = vault.encrypt(iv, b"secret", b"a")

    def removed(key: object, point: bytes) -> bytes:
        raise pkerr.DeviceRemoved()  # SoftHSM2 cannot be unplugged: injected at the call

    monkeypatch.setattr(ecdh, "_derive", removed)
    with pytest.raises(Sealed):
        vault.decrypt(iv, body, b"a")
    assert vault.sealed


@pytest.mark.parametrize("mode", ["ecdsa", "hmac"])
def test_audit_tags_verify_and_a_tampered_line_fails(
    open_ecdh: OpenEcdh, tmp_path: Path, mode: str
) -> None:
    vault = open_ecdh(audit=mode)
    log_path = tmp_path / "audit.log"
    log = AuditLog(log_path, vault.mac, FakeClock(), mac_verify=vault.mac_verify)
    for n in range(3):
        log.record("release", {"profile": f"p{n}"})
    assert verify(log_path, vault.mac_verify) == 3
    text = log_path.read_text()
    assert ('"mac":"ecdsa-p256:' in text) is (mode == "ecdsa")
    # A second writer loads the tail and the head anchor and checks their tags.
    AuditLog(log_path, vault.mac, FakeClock(), mac_verify=vault.mac_verify).record("x", {})
    assert verify(log_path, vault.mac_verify) == 4
    log_path.write_text(log_path.read_text().replace('"profile":"p1"', '"profile":"p9"'))
    with pytest.raises(AuditRecordTampered):
        verify(log_path, vault.mac_verify)


def test_ecdsa_audit_tag_checks(open_ecdh: OpenEcdh) -> None:
    vault = open_ecdh(audit="ecdsa")
    tag = vault.mac(b"data")
    assert tag.startswith(SIGNATURE_PREFIX) and len(tag) == len(SIGNATURE_PREFIX) + 64
    vault.mac_verify(b"data", tag)
    from vaultd.errors import AuditTampered

    for bad in (tag[:-1], tag + b"\x00", tag[len(SIGNATURE_PREFIX) :], b"\x00" * 32):
        with pytest.raises(AuditTampered):
            vault.mac_verify(b"data", bad)
    with pytest.raises(AuditTampered):
        vault.mac_verify(b"datA", tag)


def test_generation_is_anchored_in_the_token(open_ecdh: OpenEcdh) -> None:
    vault = open_ecdh()
    assert vault.read_generation() == 0
    vault.advance_generation(3)
    assert vault.read_generation() == 3
    assert vault.inspect()["rollback_protection"] is True


def test_auto_keeps_an_existing_ecdh_key_and_probes_otherwise(
    softhsm: SoftHsmToken, key_label: str
) -> None:
    args = (softhsm.module_path, softhsm.label, key_label)
    assert choose_scheme(*args, "auto", trial=True) == "aead"  # SoftHSM2 has token AEAD
    assert choose_scheme(*args, "ecdh", trial=True) == "ecdh"
    key = open_token_key(*args, softhsm.user_pin, scheme="ecdh", create_key=True)
    key.close()
    assert choose_scheme(*args, "auto", trial=False) == "ecdh"
    again = open_token_key(*args, softhsm.user_pin)
    try:
        assert again.key_id == key.key_id
    finally:
        again.close()
