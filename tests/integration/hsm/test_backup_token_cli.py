"""`vaultd keys add --token` and `keys recover --token` on a real SoftHSM2 installation: the
vault's token is deleted and a backup token alone brings every record to a new token."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from vaultd.testing.harness import Installation, create_installation
from vaultd.testing.softhsm import SoftHsmToken, create_token

pytestmark = pytest.mark.hsm

BACKUP_LABEL = "backup"


@pytest.fixture
def inst(tmp_path: Path) -> Iterator[Installation]:
    yield create_installation(tmp_path / "i")


@pytest.fixture
def backup(inst: Installation) -> SoftHsmToken:
    return create_token(inst.root / "hsm", label=BACKUP_LABEL)


def _token_args(inst: Installation, label: str = BACKUP_LABEL) -> list[str]:
    module = inst.token.module_path
    return ["--token", "--module", module, "--token-label", label, "--key-label", "vaultd-backup"]


def _one_line_error(proc: object) -> str:
    assert getattr(proc, "returncode") != 0  # noqa: B009 - CompletedProcess
    lines = getattr(proc, "stderr").decode().strip().splitlines()  # noqa: B009
    assert len(lines) == 1, lines
    return lines[0]


def test_a_backup_token_alone_recovers_the_store_to_a_new_token(inst: Installation) -> None:
    inst.add_key_pair("work", "AKIAWORK000000000001", "WorkSecret" + "0" * 30)
    primary_dirs = list((inst.root / "hsm" / "tokens").iterdir())
    backup = create_token(inst.root / "hsm", label=BACKUP_LABEL)
    pin = backup.user_pin.encode() + b"\n"
    added = inst.vaultd("keys", "add", *_token_args(inst), input=pin)
    assert b"enrolled backup token 'backup'" in added.stdout
    listed = inst.vaultd("keys", "list").stdout.decode().splitlines()
    assert [line.split()[0] for line in listed] == ["token", "token"]
    assert listed[1].split()[1].startswith("token-p256:")
    module = os.path.realpath(inst.token.module_path)
    assert f"backup module={module} label=backup key=vaultd-backup" in listed[1]
    again = inst.vaultd("keys", "add", *_token_args(inst), input=pin, check=False)
    assert "already opens this store" in _one_line_error(again)

    # The vault's token is lost: its files go; a new token is configured.
    for d in primary_dirs:
        shutil.rmtree(d)
    fresh = create_token(inst.root / "hsm", label="fresh")
    (inst.root / "pin").write_text(fresh.user_pin)
    inst.config["pkcs11"]["token_label"] = "fresh"
    inst.write_config()
    missing = inst.vaultd("keys", "recover", *_token_args(inst, "nope"), input=pin, check=False)
    assert "no token labelled 'nope'" in _one_line_error(missing)
    done = inst.vaultd("keys", "recover", *_token_args(inst), input=pin)
    assert b"recovered 1 records" in done.stdout and b"1 backup(s)" in done.stdout
    assert b"work" in inst.vaultd("list").stdout
    ids = [line.split()[1] for line in inst.vaultd("keys", "list").stdout.decode().splitlines()]
    assert ids[1] == listed[1].split()[1]  # the backup token still backs the new store
    inst.vaultd("keys", "remove", ids[1])
    assert inst.vaultd("keys", "list").stdout.decode().count("\n") == 1
    refused = inst.vaultd("keys", "remove", ids[0], check=False)
    assert "cannot be removed" in _one_line_error(refused)


def test_a_wrong_backup_pin_is_one_line_and_enrols_nothing(
    inst: Installation, backup: SoftHsmToken
) -> None:
    before = (inst.data_dir / "store.vault").read_bytes()
    wrong = inst.vaultd("keys", "add", *_token_args(inst), input=b"not-the-pin\n", check=False)
    line = _one_line_error(wrong)
    assert "refused the PIN" in line and "not-the-pin" not in line
    assert (inst.data_dir / "store.vault").read_bytes() == before
    inst.vaultd("keys", "add", *_token_args(inst), input=backup.user_pin.encode() + b"\n")


SPY = "/usr/lib/x86_64-linux-gnu/pkcs11-spy.so"


@pytest.mark.skipif(not os.path.exists(SPY), reason="OpenSC's pkcs11-spy.so is not installed")
def test_a_wrong_backup_pin_is_tried_once(inst: Installation, backup: SoftHsmToken) -> None:
    """OpenSC's pkcs11-spy, in front of the real SoftHSM2 for both tokens (one module per
    process), logs every call: one C_Login."""
    inst.config["pkcs11"].update(module=SPY, module_allowlist=[SPY])
    inst.write_config()
    log = inst.root / "spy.log"
    args = ["keys", "add", "--token", "--module", SPY, "--token-label", BACKUP_LABEL]
    wrong = subprocess.run(
        [sys.executable, "-m", "vaultd", *args, "--key-label", "k"],
        input=b"not-the-pin\n",
        env={**inst.env, "PKCS11SPY": inst.token.module_path, "PKCS11SPY_OUTPUT": str(log)},
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert "refused the PIN" in _one_line_error(wrong)
    assert log.read_text().count("C_Login") == 1


def test_the_vaults_own_token_is_refused_as_its_backup_before_any_pin(
    inst: Installation,
) -> None:
    own = inst.vaultd("keys", "add", *_token_args(inst, inst.token.label), check=False)
    assert "the vault's own token" in _one_line_error(own)


def test_missing_options_are_refused(inst: Installation) -> None:
    bare = inst.vaultd("keys", "add", "--token", check=False)
    assert "--module PATH and --token-label" in _one_line_error(bare)


def test_a_slot_that_is_no_piv_key_slot_is_refused_before_any_pin(
    inst: Installation, backup: SoftHsmToken
) -> None:
    args = ["--token", "--module", backup.module_path, "--token-label", backup.label]
    bad = inst.vaultd("keys", "add", *args, "--piv-slot", "9b", input=b"", check=False)
    assert "'9b' is not a PIV key slot" in _one_line_error(bad)
