"""A vault sealed by the emulated YubiKey through Yubico's unchanged ykcs11 (issue 14).

`vaultd init` generates the vault key (slot 82) and the audit key (9a) with the factory default
management key; `vaultd add`, `vaultd serve` and the real AWS CLI through credential_process with
an approval (FakeSts); `vaultd doctor` says rollback protection is unavailable; the card
removed mid-run seals the daemon and releases nothing. The card is fresh for this module.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pkcs11
import pytest
from yubikit.piv import PIN_POLICY, SLOT, TOUCH_POLICY

from vaultd.errors import HsmError
from vaultd.keys import piv
from vaultd.keys.ecdh import EcdhTokenKey
from vaultd.testing.fake_sts import FakeSts
from vaultd.testing.harness import (
    Installation,
    approve_pending,
    create_installation,
    released_with_approval,
)
from vaultd.testing.pcsc import PivStack

from .conftest import PIN, card_token, piv_session

ACCESS_KEY_ID = "AKIACANARY0000000001"
SECRET = "CanarySecretKey0000000000000000000000001"


@pytest.fixture(scope="module")
def vault(stack: PivStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installation]:
    """`vaultd init` on the fresh card, one key pair added; the daemon not started."""
    root = tmp_path_factory.mktemp("yk-vault")
    with FakeSts() as sts:
        inst = create_installation(
            root, sts_url=sts.url, token=card_token(stack, root), extra={"pkcs11": {}}
        )
        inst.add_key_pair("dev", ACCESS_KEY_ID, SECRET)
        with inst:
            yield inst


def test_init_generated_both_keys_with_the_default_management_key(
    stack: PivStack, vault: Installation
) -> None:
    keys = stack.card.state().keys
    assert {f"{slot:02x}" for slot in keys} >= {"82", "9a"}
    vault_key, audit_key = keys[0x82], keys[0x9A]  # the default touch_policy, and never
    assert (vault_key.pin_policy, vault_key.touch_policy) == (PIN_POLICY.ONCE, TOUCH_POLICY.CACHED)
    assert (audit_key.pin_policy, audit_key.touch_policy) == (PIN_POLICY.ONCE, TOUCH_POLICY.NEVER)
    store = json.loads((vault.data_dir / "store.vault").read_bytes().partition(b"\n")[2])
    assert store["key_id"].startswith("ecdh-p256:")
    again = vault.vaultd("init")  # finds the keys now: nothing generated, no warning
    assert b"generated" not in again.stdout and b"store present" in again.stdout


def test_the_aws_cli_gets_credentials_through_the_yubikey(vault: Installation) -> None:
    vault.start_daemon()
    aws = [sys.executable, "-m", "awscli", "sts", "get-caller-identity", "--profile", "admin"]
    proc = subprocess.Popen(
        aws, env=vault.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    approve_pending(vault, "909090", profile="admin")
    out, err = proc.communicate(timeout=60)  # a guard against a hang, not a timing check
    assert proc.returncode == 0, err
    assert json.loads(out)["Account"] == "123456789012"
    assert SECRET.encode() not in out + err
    vault.stop_daemon()
    doctor = vault.vaultd("doctor", check=False).stdout.decode()
    assert "scheme token ECDH (ecdh-p256:" in doctor
    assert "rollback protection is unavailable" in doctor
    assert 'PIV slot 82 policy: PIN once, touch cached: with touch "always"' in doctor
    assert "WARN  PIV PIN: the factory default (123456)" in doctor
    assert "WARN  PIV PUK: the factory default (12345678)" in doctor
    assert "WARN  PIV management key: the factory default: anyone holding" in doctor
    assert vault.vaultd("audit", "verify", check=False).returncode == 0


def _with_empty_vault_slot(vault: Installation) -> None:
    vault.config["pkcs11"]["piv_slot"] = "8f"
    vault.write_config()


def test_a_wrong_or_malformed_management_key_generates_nothing(
    stack: PivStack, vault: Installation
) -> None:
    _with_empty_vault_slot(vault)
    try:
        for given, says in (
            (b"00" * 24 + b"\n", b"the card refused the management key"),
            (b"not hex\n", b"48 hex digits"),
            (b"0102\n", b"48 hex digits"),
        ):
            refused = vault.vaultd("init", "--management-key-stdin", input=given, check=False)
            assert refused.returncode != 0
            assert says in refused.stderr and len(refused.stderr.splitlines()) == 1
            assert 0x8F not in stack.card.state().keys
    finally:
        vault.config["pkcs11"].pop("piv_slot")
        vault.write_config()


def test_the_same_store_serves_through_opensc(stack: PivStack, vault: Installation) -> None:
    """Records are bound to the card's public key, not to the module that reaches it."""
    assert stack.opensc is not None
    history = stack.card.state().objects[0x5FC10C]
    assert history.startswith("53") and "c10101" in history.lower()  # init counted slot 82
    lib = pkcs11.lib(str(stack.opensc))
    lib.reinitialize()  # OpenSC reads the card's objects once, at C_Initialize
    (opensc_label,) = [t.label for t in lib.get_tokens()]
    pkcs11_config = dict(vault.config["pkcs11"])
    vault.config["pkcs11"].update(module=str(stack.opensc), token_label=opensc_label)
    vault.write_config()
    try:
        vault.start_daemon()
        assert released_with_approval(vault, "343434")[0]["AccessKeyId"]
        vault.stop_daemon()
        assert vault.vaultd("audit", "verify", check=False).returncode == 0
    finally:
        vault.stop_daemon()
        vault.config["pkcs11"] = pkcs11_config
        vault.write_config()


def test_a_touch_that_never_comes_opens_nothing(stack: PivStack) -> None:
    """A key made by vaultd's yubikit path with touch policy "always" (ykcs11 2.2 cannot set a
    policy): each record open waits for its own touch, and one that never comes opens nothing."""
    with piv_session(stack) as session:
        piv.prepare_card(session, piv.PivSetup(touch_policy="always"), PIN, {"84": "always"}, "ec")
        meta = session.get_slot_metadata(SLOT.RETIRED3)  # ykcs11 finds the key by metadata
        assert (meta.pin_policy, meta.touch_policy) == (PIN_POLICY.ONCE, TOUCH_POLICY.ALWAYS)
    assert stack.ykcs11 is not None
    card = card_token(stack, Path("/nonexistent"))
    module, label = card.module_path, card.label
    key = EcdhTokenKey.open(module, label, "unused", PIN, piv_slots=("84", "9a"))
    try:
        iv, aad = key.random(12), b"record"
        body = key.encrypt(iv, b"touch-me", aad)  # sealing needs no touch
        stack.card.touch_comes = False
        with pytest.raises(HsmError, match="touch the key when it blinks"):
            key.decrypt(iv, body, aad)  # the card gives up after its touch timeout (0.3 s here)
        assert not key.sealed  # a missing touch is no lost token
        stack.card.touch_comes = True
        touches = stack.card.touches
        assert key.decrypt(iv, body, aad) == b"touch-me"
        assert stack.card.touches == touches + 1
        for _ in range(3):  # touch "always": no touch is cached for the next open
            assert key.decrypt(iv, body, aad) == b"touch-me"
        assert stack.card.touches == touches + 4
    finally:
        stack.card.touch_comes = True
        key.close()


def test_another_program_on_the_card_leaves_the_daemon_serving(
    stack: PivStack, vault: Installation
) -> None:
    """A YubiKey logs every connection out on any SELECT, and so does the emulated card:
    `vaultd doctor` (yubikit, then its own ykcs11 session) does that while the daemon serves.
    The daemon's next record open still works, and the card really was logged out."""
    vault.start_daemon()
    try:
        logouts = stack.card.logouts
        doctor = vault.vaultd("doctor", check=False).stdout.decode()
        assert "WARN  PIV PIN: the factory default" in doctor  # yubikit did read the card
        assert stack.card.logouts > logouts  # the daemon's login was dropped
        assert released_with_approval(vault, "252525")[0]["AccessKeyId"]
    finally:
        vault.stop_daemon()


def test_the_card_removed_mid_run_seals_and_releases_nothing(
    stack: PivStack, vault: Installation
) -> None:
    """Last in this module: the card process cannot come back once stopped."""
    vault.start_daemon()  # a new daemon: no session cached, so the release opens the record
    assert b"unsealed" in vault.vaultd("status").stdout
    stack.card.stop()  # the YubiKey leaves the reader
    client = subprocess.Popen(
        [sys.executable, "-m", "vaultd", "credential-process", "dev"],
        env=vault.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    # The request's audit record is the first token call (signed by the 9a key): it fails, the
    # daemon seals, and the request is refused before any approval is asked for.
    out, err = client.communicate(timeout=60)  # a guard against a hang, not a timing check
    assert client.returncode != 0 and out == b""
    assert len(err.strip().splitlines()) == 1, err
    assert b"nothing was released" in err and SECRET.encode() not in err
    assert b"SEALED" in vault.vaultd("status", check=False).stdout
