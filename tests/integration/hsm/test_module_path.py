"""check_module_path: only allowlisted, non-writable PKCS#11 modules load (docs/threat-model.md
T25)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vaultd.errors import HsmModuleRefused
from vaultd.keys.pkcs11 import DEFAULT_MODULE_ALLOWLIST, check_module_path
from vaultd.testing.softhsm import find_softhsm_module


@pytest.fixture
def module_dir(tmp_path: Path) -> Path:
    """A private directory holding a stand-in module file (its bytes are never loaded)."""
    directory = tmp_path / "lib"
    directory.mkdir(mode=0o755)
    module = directory / "libtoken.so.1"
    module.write_bytes(b"\x7fELF stand-in")
    module.chmod(0o644)
    return directory


def test_symlink_to_allowlisted_module_resolves(tmp_path: Path) -> None:
    installed = find_softhsm_module()
    if installed is None:
        pytest.skip("SoftHSM2 is not installed")
    link = tmp_path / "my-module.so"
    link.symlink_to(installed)
    assert check_module_path(str(link), DEFAULT_MODULE_ALLOWLIST) == os.path.realpath(installed)


def test_allowlisted_file_and_glob_entry(module_dir: Path) -> None:
    module = module_dir / "libtoken.so.1"
    assert check_module_path(str(module), [str(module)]) == str(module)
    assert check_module_path(str(module), [str(module_dir / "libtoken.so*")]) == str(module)


def test_off_list_module_is_refused(module_dir: Path) -> None:
    module = module_dir / "libtoken.so.1"
    with pytest.raises(HsmModuleRefused) as info:
        check_module_path(str(module), DEFAULT_MODULE_ALLOWLIST)
    assert str(module) in str(info.value)
    assert info.value.code == "HSM_MODULE_REFUSED"


def test_only_the_allowlisted_file_passes(module_dir: Path, tmp_path: Path) -> None:
    allowed = module_dir / "libtoken.so.1"
    other = tmp_path / "evil.so"
    other.write_bytes(b"x")
    with pytest.raises(HsmModuleRefused):
        check_module_path(str(other), [str(allowed)])


@pytest.mark.parametrize("mode", [0o664, 0o646])
def test_writable_module_file_is_refused(module_dir: Path, mode: int) -> None:
    module = module_dir / "libtoken.so.1"
    module.chmod(mode)
    with pytest.raises(HsmModuleRefused, match="chmod go-w"):
        check_module_path(str(module), [str(module)])


def test_module_in_group_writable_dir_is_refused(module_dir: Path) -> None:
    module = module_dir / "libtoken.so.1"
    module_dir.chmod(0o775)
    with pytest.raises(HsmModuleRefused) as info:
        check_module_path(str(module), [str(module)])
    assert str(module_dir) in str(info.value)


def test_missing_module_is_refused(module_dir: Path) -> None:
    gone = module_dir / "gone.so"
    with pytest.raises(HsmModuleRefused):
        check_module_path(str(gone), [str(gone)])
