"""docs/threat-model.md T22: unsafe permissions on config, data dir and store refuse with the path
and fix."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from vaultd.testing.harness import Installation

MakeVault = Callable[..., Installation]


@pytest.mark.parametrize("mode", [0o664, 0o606, 0o666])
def test_writable_config_is_refused(make_vault: MakeVault, mode: int) -> None:
    inst = make_vault(start=False)
    os.chmod(inst.config_path, mode)
    done = inst.vaultd("list", check=False)
    assert done.returncode != 0
    assert done.stdout == b""
    assert b"UNSAFE_PERMISSIONS" in done.stderr
    assert str(inst.config_path).encode() in done.stderr
    assert b"chmod" in done.stderr


def test_symlinked_config_is_refused(make_vault: MakeVault, tmp_path: Path) -> None:
    inst = make_vault(start=False)
    real = tmp_path / "real.toml"
    os.rename(inst.config_path, real)
    os.symlink(real, inst.config_path)
    done = inst.vaultd("list", check=False)
    assert done.returncode != 0 and b"UNSAFE_PERMISSIONS" in done.stderr


@pytest.mark.parametrize("mode", [0o755, 0o750, 0o701])
def test_open_data_dir_is_refused_by_cli_and_daemon(make_vault: MakeVault, mode: int) -> None:
    inst = make_vault(start=False)
    os.chmod(inst.data_dir, mode)
    for args in (("list",), ("serve",)):
        done = inst.vaultd(*args, check=False, timeout=30)
        assert done.returncode != 0, args
        assert b"UNSAFE_PERMISSIONS" in done.stderr
        assert str(inst.data_dir).encode() in done.stderr


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_readable_store_file_is_refused(make_vault: MakeVault, mode: int) -> None:
    inst = make_vault(start=False)
    store = inst.data_dir / "store.vault"
    os.chmod(store, mode)
    done = inst.vaultd("list", check=False)
    assert done.returncode != 0
    assert b"UNSAFE_PERMISSIONS" in done.stderr
    assert str(store).encode() in done.stderr


@pytest.mark.priv
def test_foreign_owned_store_is_refused(make_vault: MakeVault) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to chown a file to another uid")
    inst = make_vault(start=False)
    store = inst.data_dir / "store.vault"
    os.chown(store, 65534, 65534)
    done = inst.vaultd("list", check=False)
    assert done.returncode != 0 and b"UNSAFE_PERMISSIONS" in done.stderr


def test_pkcs11_module_off_the_allowlist_is_refused(make_vault: MakeVault, tmp_path: Path) -> None:
    inst = make_vault(start=False)
    rogue = tmp_path / "rogue.so"
    rogue.write_bytes(Path(inst.token.module_path).read_bytes())
    inst.config["pkcs11"]["module"] = str(rogue)
    inst.write_config()
    done = inst.vaultd("list", check=False)
    assert done.returncode != 0
    assert b"HSM_MODULE_REFUSED" in done.stderr


def test_wrong_pin_is_one_line_and_leaves_the_store_loadable(make_vault: MakeVault) -> None:
    inst = make_vault(start=False)
    pin_file = Path(inst.config["pkcs11"]["pin_source"].removeprefix("file:"))
    good = pin_file.read_text()
    pin_file.write_text("000000wrong")
    done = inst.vaultd("list", check=False)
    assert done.returncode != 0
    assert b"HSM_PIN_INCORRECT" in done.stderr
    assert done.stderr.count(b"\n") == 1
    assert b"000000wrong" not in done.stderr
    pin_file.write_text(good)
    assert b"dev" in inst.vaultd("list").stdout


def test_missing_token_is_a_clear_error(make_vault: MakeVault) -> None:
    inst = make_vault(start=False)
    inst.config["pkcs11"]["token_label"] = "absent"
    inst.write_config()
    done = inst.vaultd("list", check=False)
    assert done.returncode != 0
    assert b"TOKEN_NOT_FOUND" in done.stderr and b"absent" in done.stderr


def test_a_module_that_fails_to_load_has_its_own_code_not_sealed(
    make_vault: MakeVault, tmp_path: Path
) -> None:
    inst = make_vault(start=False)
    broken = tmp_path / "broken.so"
    broken.write_bytes(b"not a shared object")
    inst.config["pkcs11"]["module"] = str(broken)
    inst.config["pkcs11"]["module_allowlist"] = [str(broken)]
    inst.write_config()
    done = inst.vaultd("list", check=False)
    assert done.returncode == 69 and done.stdout == b""
    assert done.stderr.count(b"\n") == 1, done.stderr
    assert b"HSM_MODULE_LOAD_FAILED" in done.stderr and str(broken).encode() in done.stderr
    assert b"SEALED" not in done.stderr
