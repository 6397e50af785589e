"""The token RSA-OAEP scheme on the emulated YubiKey, through the vendors' unchanged modules.

`vaultd init` with `pkcs11.scheme = "rsa-oaep"` generates RSA-2048 keys in slots 82 (vault) and
9a (audit, RSA-PSS) through yubikit (PIN once, touch cached; the factory default management
key); `vaultd add`, a real daemon serving credential_process with an approval, `vaultd doctor`
naming what the scheme gives up, `vaultd audit verify`; the same store through OpenSC's
opensc-pkcs11.so; records corrupted, forged, downgraded, sealed to another key or wrapped with
PKCS#1 v1.5 are refused; a recovery key opens alone what the card sealed to both.
SoftHSM2 2.6 cannot run this scheme (its RSA-OAEP takes SHA-1 only: tests/integration/hsm/
test_rsa_oaep.py), so the scheme's record checks run here. The card is fresh for this module.
"""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from yubikit.piv import DEFAULT_MANAGEMENT_KEY, KEY_TYPE, PIN_POLICY, SLOT, TOUCH_POLICY

from vaultd.core.envelope import (
    ALG_ECDH_P256,
    ALG_RECIPIENTS,
    ALG_RSA_OAEP,
    parse_header,
    seal,
    unseal,
)
from vaultd.core.model import RecordKind
from vaultd.errors import HsmError, RecordCorrupt
from vaultd.keys import recovery, rsa_oaep
from vaultd.keys.recipients import AbsentRecipient, RecipientSet, TokenRecipient
from vaultd.keys.rsa_oaep import RsaTokenKey
from vaultd.store.files import _context
from vaultd.testing.fake_sts import FakeSts
from vaultd.testing.harness import (
    Installation,
    create_installation,
    released_with_approval,
)
from vaultd.testing.pcsc import PivStack

from .conftest import PIN, card_token, piv_session, without_yubikit

ACCESS_KEY_ID = "AKIACANARY0000000004"
SECRET = "CanarySecretKey0000000000000000000000004"
BINDING = {"kind": "key-pair", "name": "prod", "generation": 7, "context": b"ctx"}


@pytest.fixture(scope="module")
def vault(stack: PivStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installation]:
    """`vaultd init` under rsa-oaep on the fresh card, one key pair added; no daemon yet."""
    root = tmp_path_factory.mktemp("rsa-vault")
    with FakeSts() as sts:
        inst = create_installation(
            root,
            sts_url=sts.url,
            token=card_token(stack, root),
            extra={"pkcs11": {"scheme": "rsa-oaep"}},
        )
        inst.add_key_pair("dev", ACCESS_KEY_ID, SECRET)
        with inst:
            yield inst


@pytest.fixture
def card_key(stack: PivStack, vault: Installation) -> Iterator[RsaTokenKey]:
    """The vault's key through ykcs11, opened in this process (the daemon stopped)."""
    vault.stop_daemon()
    card = card_token(stack, Path("/nonexistent"))
    key = RsaTokenKey.open(card.module_path, card.label, "unused", PIN)
    yield key
    key.close()


def _credential_process(vault: Installation, code: str) -> dict[str, object]:
    released, err = released_with_approval(vault, code)
    assert SECRET.encode() not in err
    return released


def test_init_made_rsa_keys_and_the_daemon_serves(stack: PivStack, vault: Installation) -> None:
    keys = stack.card.state().keys
    assert {f"{slot:02x}" for slot in keys} >= {"82", "9a"}
    store = json.loads((vault.data_dir / "store.vault").read_bytes().partition(b"\n")[2])
    assert store["key_id"].startswith("rsa-oaep:")
    again = vault.vaultd("init")  # finds the keys now: nothing generated
    assert b"ready (token RSA-OAEP: RSA-2048" in again.stdout and b"generated" not in again.stdout
    vault.start_daemon()
    assert _credential_process(vault, "454545")["AccessKeyId"]
    vault.stop_daemon()
    doctor = vault.vaultd("doctor", check=False).stdout.decode()
    assert "scheme token RSA-OAEP (rsa-oaep:" in doctor
    assert "RSA-PSS (SHA-256) signature" in doctor
    assert "data key in this host's memory" in doctor and "112-bit" in doctor
    assert "rollback protection is unavailable" in doctor
    assert vault.vaultd("audit", "verify", check=False).returncode == 0


def test_the_same_store_serves_through_opensc(stack: PivStack, vault: Installation) -> None:
    """Records are bound to the card's RSA public key, not to the module that reaches it."""
    opensc = card_token(stack, Path("/nonexistent"), opensc=True)
    saved = dict(vault.config["pkcs11"])
    vault.config["pkcs11"].update(module=opensc.module_path, token_label=opensc.label)
    vault.write_config()
    try:
        vault.start_daemon()
        assert _credential_process(vault, "565656")["AccessKeyId"]
        vault.stop_daemon()
        assert vault.vaultd("audit", "verify", check=False).returncode == 0
    finally:
        vault.stop_daemon()
        vault.config["pkcs11"] = saved
        vault.write_config()


def test_records_open_and_bind_the_scheme(card_key: RsaTokenKey) -> None:
    blob = seal(card_key, b"secret", **BINDING)  # type: ignore[arg-type]
    header = parse_header(blob)
    assert header.algorithm == ALG_RSA_OAEP and header.key_id == card_key.key_id
    assert unseal(card_key, blob, **BINDING) == b"secret"  # type: ignore[arg-type]
    with pytest.raises(RecordCorrupt):
        unseal(card_key, blob, **{**BINDING, "name": "other"})  # type: ignore[arg-type]


def test_corrupted_records_are_refused(card_key: RsaTokenKey) -> None:
    blob = seal(card_key, b"0123456789", **BINDING)  # type: ignore[arg-type]
    start = len(blob) - 10 - 16 - rsa_oaep.WRAPPED_LEN
    # a flip in the header, the IV, the wrapped key (first and last byte), the ciphertext, the tag
    for i in (0, 5, 8, start - 1, start, start + 255, len(blob) - 20, len(blob) - 1):
        bad = bytearray(blob)
        bad[i] ^= 0x01
        with pytest.raises(RecordCorrupt):
            unseal(card_key, bytes(bad), **BINDING)  # type: ignore[arg-type]
    for cut in (len(blob) - 1, len(blob) - 30):
        with pytest.raises(RecordCorrupt):
            unseal(card_key, blob[:cut], **BINDING)  # type: ignore[arg-type]
    assert not card_key.sealed  # a bad record is the record's fault, not the card's
    assert unseal(card_key, blob, **BINDING) == b"0123456789"  # type: ignore[arg-type]


def test_a_pkcs1_v15_wrapping_is_not_accepted(card_key: RsaTokenKey) -> None:
    """The same data key, wrapped with PKCS#1 v1.5 instead of OAEP: never unwrapped."""
    iv, aad, data_key = card_key.random(12), b"aad", card_key.random(rsa_oaep.DATA_KEY_LEN)
    good = card_key.encrypt(iv, b"secret", aad)
    v15 = card_key.public_key.encrypt(data_key, padding.PKCS1v15())
    body = v15 + AESGCM(data_key).encrypt(iv, b"secret", aad)
    with pytest.raises(RecordCorrupt, match="cannot unwrap"):
        card_key.decrypt(iv, body, aad)
    assert card_key.decrypt(iv, good, aad) == b"secret"


def test_a_record_sealed_to_another_key_is_refused(card_key: RsaTokenKey) -> None:
    """A wrapping to another RSA-2048 key, under this key's id: the card cannot unwrap it."""
    other = rsa.generate_private_key(65537, 2048).public_key()
    iv, aad = card_key.random(12), b"aad"
    with pytest.raises(RecordCorrupt, match="cannot unwrap"):
        card_key.decrypt(iv, rsa_oaep.seal_to(other, iv, b"secret", aad), aad)
    # and a record naming another key id is refused before the card is asked
    blob = bytearray(seal(card_key, b"secret", **BINDING))  # type: ignore[arg-type]
    forged_id = card_key.key_id[:-1] + ("0" if card_key.key_id[-1] != "0" else "1")
    forged = bytes(blob).replace(card_key.key_id.encode(), forged_id.encode())
    with pytest.raises(RecordCorrupt, match=forged_id):
        unseal(card_key, forged, **BINDING)  # type: ignore[arg-type]


def test_a_downgraded_record_is_refused(card_key: RsaTokenKey) -> None:
    """The algorithm byte rewritten to token ECDH (or AEAD) under an rsa-oaep key id."""
    blob = seal(card_key, b"secret", **BINDING)  # type: ignore[arg-type]
    for algorithm in (1, ALG_ECDH_P256):
        forged = bytearray(blob)
        forged[5] = algorithm
        with pytest.raises(RecordCorrupt, match="never uses"):
            unseal(card_key, bytes(forged), **BINDING)  # type: ignore[arg-type]


def test_the_store_refuses_the_token_ecdh_scheme(vault: Installation) -> None:
    """The same card under `scheme = "ecdh"`: its slot 82 holds an RSA key, so nothing opens."""
    vault.stop_daemon()
    vault.config["pkcs11"]["scheme"] = "ecdh"
    vault.write_config()
    try:
        refused = vault.vaultd("list", check=False)
        assert refused.returncode != 0
        assert b"not a P-256 key" in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1
    finally:
        vault.config["pkcs11"]["scheme"] = "rsa-oaep"
        vault.write_config()


def test_without_yubikit_ykcs11_generates_the_rsa_keys(
    stack: PivStack, vault: Installation, tmp_path: Path
) -> None:
    """The fallback: ykcs11 generates RSA-2048 keys at SO login (the card picks the policies)
    and nobody writes Key History; init says both."""
    vault.stop_daemon()
    saved = dict(vault.config["pkcs11"]), vault.config["data_dir"]
    vault.config["pkcs11"].update(piv_slot="86", piv_audit_slot="9e")
    vault.config["data_dir"] = str(vault.root / "data-86")
    vault.write_config()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "vaultd", "init"],
            env=without_yubikit(vault.env, tmp_path),
            capture_output=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert b"generated an RSA-2048 key in PIV slot 86 (the card's policies)" in done.stdout
        assert b"generated an RSA-2048 key in PIV slot 9e (the card's policies)" in done.stdout
        assert b"yubikit is not installed" in done.stdout
        assert {0x86, 0x9E} <= set(stack.card.state().keys)
    finally:
        vault.config["pkcs11"], vault.config["data_dir"] = saved
        vault.write_config()


def test_opensc_opens_records_after_refusing_one(stack: PivStack, vault: Installation) -> None:
    """OpenSC 0.23 leaves a failed C_Decrypt active in its session: the next opens still work."""
    vault.stop_daemon()
    opensc = card_token(stack, Path("/nonexistent"), opensc=True)
    key = RsaTokenKey.open(opensc.module_path, opensc.label, "unused", PIN)
    try:
        iv, aad = key.random(12), b"aad"
        good = key.encrypt(iv, b"secret", aad)
        for _ in range(2):
            bad = bytearray(good)
            bad[0] ^= 0x01
            with pytest.raises(RecordCorrupt, match="cannot unwrap"):
                key.decrypt(iv, bytes(bad), aad)
            assert key.decrypt(iv, good, aad) == b"secret"
        key.mac_verify(b"audit", key.mac(b"audit"))  # the logged-in session still signs
    finally:
        key.close()


def test_a_touch_that_never_comes_is_not_a_corrupt_record(stack: PivStack) -> None:
    """ykcs11 says FunctionFailed both for a missing touch and for a bad wrapping: told apart."""
    with piv_session(stack) as piv:
        piv.authenticate(DEFAULT_MANAGEMENT_KEY)
        piv.generate_key(SLOT.RETIRED3, KEY_TYPE.RSA2048, PIN_POLICY.ONCE, TOUCH_POLICY.ALWAYS)
    card = card_token(stack, Path("/nonexistent"))
    key = RsaTokenKey.open(card.module_path, card.label, "unused", PIN, piv_slots=("84", "9a"))
    try:
        iv, aad = key.random(12), b"record"
        body = key.encrypt(iv, b"touch-me", aad)  # sealing needs no touch
        stack.card.touch_comes = False
        with pytest.raises(HsmError, match="touch the key when it blinks"):
            key.decrypt(iv, body, aad)  # the card gives up after its touch timeout (0.3 s here)
        assert not key.sealed  # a missing touch is no lost token
        stack.card.touch_comes = True
        assert key.decrypt(iv, body, aad) == b"touch-me"
    finally:
        stack.card.touch_comes = True
        key.close()


class PublicKeySealer:
    """What a forger has: the card's RSA public key (readable without the PIN), nothing else."""

    def __init__(self, public: rsa.RSAPublicKey) -> None:
        self._public = public
        self.key_id = rsa_oaep.key_id_for(public)

    def random(self, n: int) -> bytes:
        return secrets.token_bytes(n)

    def encrypt(self, iv: bytes, plaintext: bytes, aad: bytes) -> bytes:
        return rsa_oaep.seal_to(self._public, iv, plaintext, aad)

    def decrypt(self, iv: bytes, ciphertext: bytes, aad: bytes) -> bytes:
        raise AssertionError("the forger cannot open")


def test_a_record_forged_with_the_public_key_is_refused(
    vault: Installation, card_key: RsaTokenKey
) -> None:
    """The forger's own AWS keys sealed to the card, in place of the user's: the index tag (an
    RSA-PSS signature by the card's audit key) no longer matches, so the store is refused."""
    sealer = PublicKeySealer(card_key.public_key)
    assert sealer.key_id == card_key.key_id
    path = vault.data_dir / "store.vault"
    original = path.read_bytes()
    header, _, body = original.partition(b"\n")
    doc = json.loads(body)
    (record,) = [r for r in doc["records"] if r["name"] == "dev"]
    context = _context(record["created"], record["masked_id"], record["root"])
    blob = seal(
        sealer,
        b"AKIAFORGER",
        kind=RecordKind.KEY_PAIR.value,
        name="dev",
        generation=doc["generation"],
        context=context,
    )
    record["blob"] = base64.b64encode(blob).decode()
    path.write_bytes(header + b"\n" + json.dumps(doc).encode())
    try:
        refused = vault.vaultd("list", check=False)
        assert refused.returncode != 0 and b"STORE_UNREADABLE" in refused.stderr, refused.stderr
        assert b"tag" in refused.stderr, refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1
    finally:
        path.write_bytes(original)
    assert b"dev" in vault.vaultd("list").stdout


def test_a_recovery_key_opens_what_the_card_sealed(card_key: RsaTokenKey) -> None:
    """Backups (issue 14 item 5) under token RSA-OAEP: the card or the recovery key alone."""
    rec = recovery.generate()
    primary = TokenRecipient(card_key)
    by_card = RecipientSet([primary, rec], primary)
    blob = seal(by_card, b"secret", **BINDING)  # type: ignore[arg-type]
    assert parse_header(blob).algorithm == ALG_RECIPIENTS
    assert unseal(by_card, blob, **BINDING) == b"secret"  # type: ignore[arg-type]
    typed = recovery.from_words(rec.to_words())
    by_recovery = RecipientSet([AbsentRecipient(card_key.key_id), typed], typed)
    assert unseal(by_recovery, blob, **BINDING) == b"secret"  # type: ignore[arg-type]
