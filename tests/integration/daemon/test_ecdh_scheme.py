"""A real daemon on a vault sealed under the token ECDH scheme (issue 14): `vaultd init`,
`vaultd add`, `vaultd serve`, a credential_process release with an approval, `vaultd doctor`
saying what the scheme gives up, and `vaultd audit verify`."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from vaultd.testing.harness import Installation, released_with_approval

pytestmark = pytest.mark.hsm

MakeVault = Callable[..., Installation]
ECDH = {"pkcs11": {"scheme": "ecdh"}}


def test_ecdh_vault_serves_credentials_and_doctor_names_the_scheme(make_vault: MakeVault) -> None:
    inst = make_vault(extra=ECDH)
    store = json.loads((inst.data_dir / "store.vault").read_bytes().partition(b"\n")[2])
    assert store["key_id"].startswith("ecdh-p256:")
    assert released_with_approval(inst, "123456")[0]["Version"] == 1
    inst.stop_daemon()
    doctor = inst.vaultd("doctor", check=False)
    text = doctor.stdout.decode()
    assert "scheme token ECDH (ecdh-p256:" in text
    assert "host's memory for the moment of the open" in text
    assert "rollback protection is unavailable" not in text  # SoftHSM2 keeps data objects
    verified = inst.vaultd("audit", "verify", check=False)
    assert verified.returncode == 0, verified.stderr


def test_a_store_sealed_under_ecdh_is_refused_under_token_aead(make_vault: MakeVault) -> None:
    """A downgrade: the token gets an AES key too, and the store still opens only under ECDH."""
    inst = make_vault(extra=ECDH, start=False)
    inst.config["pkcs11"]["scheme"] = "aead"
    inst.write_config()
    refused = inst.vaultd("init", check=False)  # makes the AES key, then checks the store
    assert refused.returncode != 0
    assert refused.stdout.count(b"ready") == 0
    assert b"STORE_UNREADABLE" in refused.stderr and b"ecdh-p256:" in refused.stderr
    inst.config["pkcs11"]["scheme"] = "auto"  # auto keeps the vault's ECDH key
    inst.write_config()
    assert b"dev" in inst.vaultd("list").stdout


@pytest.mark.parametrize("scheme", ["aead", "ecdh"])
def test_protect_management_key_is_refused_off_a_piv_card(
    make_vault: MakeVault, scheme: str
) -> None:
    inst = make_vault(extra={"pkcs11": {"scheme": scheme}}, start=False)
    refused = inst.vaultd("init", "--protect-management-key", check=False)
    assert refused.returncode != 0
    assert len(refused.stderr.splitlines()) == 1, refused.stderr
    assert b"--protect-management-key is for PIV cards" in refused.stderr
    assert "PIV slot" not in inst.vaultd("doctor", check=False).stdout.decode()
