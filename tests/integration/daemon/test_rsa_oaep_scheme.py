"""`vaultd init` under `pkcs11.scheme = "rsa-oaep"` on SoftHSM2 2.6, whose RSA-OAEP takes SHA-1
only: refused in one line, nothing made ready (the scheme serving through a real daemon is in
tests/integration/piv/test_rsa_oaep.py, on the emulated YubiKey)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from vaultd.testing.harness import Installation

pytestmark = pytest.mark.hsm

MakeVault = Callable[..., Installation]


def test_vaultd_init_under_rsa_oaep_fails_in_one_line(make_vault: MakeVault) -> None:
    inst = make_vault(start=False)
    inst.config["pkcs11"].update(scheme="rsa-oaep", key_label="vaultd-rsa")
    inst.write_config()
    refused = inst.vaultd("init", check=False)
    assert refused.returncode != 0
    assert b"ready" not in refused.stdout
    assert len(refused.stderr.strip().splitlines()) == 1
    assert b"HSM_ERROR" in refused.stderr and b"refuses SHA-256" in refused.stderr
