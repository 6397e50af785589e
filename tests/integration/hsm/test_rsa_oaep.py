"""The token RSA-OAEP scheme against a real SoftHSM2 2.6 token (issue 14; docs/threat-model.md T7).

SoftHSM2 2.6 generates RSA-2048 keys and signs RSA-PSS with SHA-256, but its RSA-OAEP takes
SHA-1 only, and vaultd never asks for less than SHA-256: so `vaultd init` under `rsa-oaep`
refuses this module with one clear line, and record opens run on the emulated YubiKey through
ykcs11 and OpenSC instead (tests/integration/piv/test_rsa_oaep.py). What SoftHSM2 can run is
tested here: key checks, the RSA-PSS audit tag, the scheme's choice.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pkcs11
import pytest
from pkcs11 import Attribute, KeyType, Session

from vaultd.errors import AuditRecordTampered, AuditTampered, HsmError, HsmKeyUnsafe
from vaultd.keys import rsa_oaep
from vaultd.keys.rsa_oaep import SIGNATURE_PREFIX, RsaTokenKey
from vaultd.keys.schemes import choose_scheme
from vaultd.store.audit import AuditLog, verify
from vaultd.testing.clock import FakeClock
from vaultd.testing.softhsm import SoftHsmToken

pytestmark = pytest.mark.hsm


def _session(softhsm: SoftHsmToken) -> Session:
    token = pkcs11.lib(softhsm.module_path).get_token(token_label=softhsm.label)
    return token.open(rw=True, user_pin=softhsm.user_pin)


@pytest.fixture
def made_keys(softhsm: SoftHsmToken, key_label: str) -> str:
    """The vault key and the RSA-PSS audit key, made as `vaultd init` makes them."""
    with _session(softhsm) as session:
        rsa_oaep._generate_rsa(session, key_label, "decrypt")
        rsa_oaep._generate_rsa(session, f"{key_label}-audit", "sign")
    return key_label


@pytest.fixture
def vault(softhsm: SoftHsmToken, made_keys: str) -> Iterator[RsaTokenKey]:
    key = RsaTokenKey.open(softhsm.module_path, softhsm.label, made_keys, softhsm.user_pin)
    yield key
    key.close()


def test_init_refuses_a_module_without_oaep_sha256(softhsm: SoftHsmToken, key_label: str) -> None:
    with pytest.raises(HsmError, match="refuses SHA-256") as info:
        RsaTokenKey.open(
            softhsm.module_path, softhsm.label, key_label, softhsm.user_pin, create_key=True
        )
    assert "\n" not in str(info.value)


def test_an_open_on_such_a_module_says_why_and_does_not_seal(vault: RsaTokenKey) -> None:
    iv = vault.random(12)
    body = vault.encrypt(iv, b"secret", b"aad")  # sealing is on the host
    with pytest.raises(HsmError, match="refuses SHA-256"):
        vault.decrypt(iv, body, b"aad")
    assert not vault.sealed


def test_keys_are_sensitive_and_named_by_the_public_key(
    vault: RsaTokenKey, softhsm: SoftHsmToken, made_keys: str
) -> None:
    key_id = vault.key_id
    info = vault.inspect()
    assert info["scheme"] == "rsa-oaep" and vault.key_id == rsa_oaep.key_id_for(vault.public_key)
    assert info["key_attributes"] == {
        "TOKEN": True,
        "PRIVATE": True,
        "SENSITIVE": True,
        "EXTRACTABLE": False,
        "ALWAYS_SENSITIVE": True,
        "NEVER_EXTRACTABLE": True,
    }
    assert info["audit"] == "RSA-PSS (SHA-256) signature by a second token key"
    assert vault.public_key.key_size == 2048
    vault.close()
    again = RsaTokenKey.open(softhsm.module_path, softhsm.label, made_keys, softhsm.user_pin)
    try:
        assert again.key_id == key_id  # stable across sessions
    finally:
        again.close()


@pytest.mark.parametrize(
    ("template", "bits", "says"),
    [
        ({Attribute.EXTRACTABLE: True, Attribute.SENSITIVE: True}, 2048, "EXTRACTABLE=True"),
        ({Attribute.EXTRACTABLE: False, Attribute.SENSITIVE: True}, 1024, "is RSA-1024"),
    ],
)
def test_an_unsafe_key_is_refused(
    softhsm: SoftHsmToken,
    key_label: str,
    template: dict[Attribute, bool],
    bits: int,
    says: str,
) -> None:
    with _session(softhsm) as session:
        session.generate_keypair(
            KeyType.RSA, bits, store=True, id=b"x", label=key_label, private_template=template
        )
    with pytest.raises(HsmKeyUnsafe, match=says):
        RsaTokenKey.open(softhsm.module_path, softhsm.label, key_label, softhsm.user_pin)


def test_an_ec_key_is_not_an_rsa_key(softhsm: SoftHsmToken, key_label: str) -> None:
    from vaultd.keys.ecdh import EcdhTokenKey

    EcdhTokenKey.open(
        softhsm.module_path, softhsm.label, key_label, softhsm.user_pin, create_key=True
    ).close()
    with pytest.raises(HsmKeyUnsafe, match="is not an RSA key"):
        RsaTokenKey.open(softhsm.module_path, softhsm.label, key_label, softhsm.user_pin)


def test_pss_audit_tags_verify_and_tampering_fails(vault: RsaTokenKey, tmp_path: Path) -> None:
    tag = vault.mac(b"data")
    assert tag.startswith(SIGNATURE_PREFIX) and len(tag) == len(SIGNATURE_PREFIX) + 256
    vault.mac_verify(b"data", tag)
    for bad in (tag[:-1], tag + b"\x00", tag[len(SIGNATURE_PREFIX) :], b"\x00" * 32):
        with pytest.raises(AuditTampered):
            vault.mac_verify(b"data", bad)
    with pytest.raises(AuditTampered):
        vault.mac_verify(b"datA", tag)
    log_path = tmp_path / "audit.log"
    log = AuditLog(log_path, vault.mac, FakeClock(), mac_verify=vault.mac_verify)
    for n in range(3):
        log.record("release", {"profile": f"p{n}"})
    assert verify(log_path, vault.mac_verify) == 3
    log_path.write_text(log_path.read_text().replace('"profile":"p1"', '"profile":"p9"'))
    with pytest.raises(AuditRecordTampered):
        verify(log_path, vault.mac_verify)


def test_generation_is_anchored_in_the_token(vault: RsaTokenKey) -> None:
    assert vault.read_generation() == 0
    vault.advance_generation(4)
    assert vault.read_generation() == 4 and vault.inspect()["rollback_protection"] is True


def test_auto_keeps_an_rsa_key_and_never_prefers_it(
    softhsm: SoftHsmToken, key_label: str, made_keys: str
) -> None:
    args = (softhsm.module_path, softhsm.label)
    assert choose_scheme(*args, "other-label", "auto", trial=True) == "aead"  # token AEAD first
    assert choose_scheme(*args, "other-label", "rsa-oaep", trial=True) == "rsa-oaep"
    assert choose_scheme(*args, made_keys, "auto", trial=False) == "rsa-oaep"
