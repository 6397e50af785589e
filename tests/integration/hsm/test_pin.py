"""read_pin: the allowed PIN sources and their refusals (docs/threat-model.md T9, T22)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import keyring
import keyring.backend
import keyring.backends.fail
import pytest

from vaultd.errors import ConfigError, UnsafePermissions
from vaultd.keys import pin as pin_module
from vaultd.keys.pin import read_pin, store_pin_in_keyring

LABEL = "vaultd-test"


class MemoryKeyring(keyring.backend.KeyringBackend):
    """An in-memory fake keyring: CI has no OS keyring daemon (no D-Bus session)."""

    priority = 1

    def __init__(self) -> None:
        super().__init__()
        self.items: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.items.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.items[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        del self.items[(service, username)]


@pytest.fixture
def memory_keyring() -> Iterator[MemoryKeyring]:
    previous = keyring.get_keyring()
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    yield backend
    keyring.set_keyring(previous)


def _pin_file(tmp_path: Path, content: bytes, mode: int = 0o600) -> Path:
    path = tmp_path / "pin"
    path.write_bytes(content)
    path.chmod(mode)
    return path


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_private_file_is_read(tmp_path: Path, mode: int) -> None:
    path = _pin_file(tmp_path, b"123456", mode)
    pin = read_pin(f"file:{path}", token_label=LABEL)
    assert isinstance(pin, bytearray)
    assert pin == bytearray(b"123456")


def test_one_trailing_newline_is_stripped(tmp_path: Path) -> None:
    path = _pin_file(tmp_path, b"9876\n")
    assert read_pin(f"file:{path}", token_label=LABEL) == b"9876"
    path = _pin_file(tmp_path, b" 9876\n\n")
    assert read_pin(f"file:{path}", token_label=LABEL) == b" 9876\n"


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o700, 0o660])
def test_open_file_is_refused_naming_path_and_fix(tmp_path: Path, mode: int) -> None:
    path = _pin_file(tmp_path, b"123456", mode)
    with pytest.raises(UnsafePermissions) as info:
        read_pin(f"file:{path}", token_label=LABEL)
    assert info.value.path == str(path)
    assert f"chmod 600 {path}" in str(info.value)
    assert "123456" not in str(info.value)


def test_symlink_is_refused(tmp_path: Path) -> None:
    target = _pin_file(tmp_path, b"123456")
    link = tmp_path / "pin-link"
    link.symlink_to(target)
    with pytest.raises(UnsafePermissions) as info:
        read_pin(f"file:{link}", token_label=LABEL)
    assert info.value.path == str(link)
    assert "symlink" in str(info.value)


def test_directory_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "pin-dir"
    directory.mkdir(mode=0o700)
    with pytest.raises(UnsafePermissions, match="regular file"):
        read_pin(f"file:{directory}", token_label=LABEL)


@pytest.mark.priv
def test_foreign_owned_file_is_refused(tmp_path: Path) -> None:
    if os.getuid() != 0:
        pytest.skip("needs root to chown the file to another uid")
    path = _pin_file(tmp_path, b"123456")
    os.chown(path, 65534, 65534)
    with pytest.raises(UnsafePermissions, match="owned by uid 65534"):
        read_pin(f"file:{path}", token_label=LABEL)


@pytest.mark.parametrize("content", [b"", b"\n"])
def test_empty_file_is_config_error(tmp_path: Path, content: bytes) -> None:
    with pytest.raises(ConfigError, match="empty"):
        read_pin(f"file:{_pin_file(tmp_path, content)}", token_label=LABEL)


def test_oversized_file_is_config_error(tmp_path: Path) -> None:
    path = _pin_file(tmp_path, b"1" * (pin_module.MAX_PIN_FILE_BYTES + 1))
    with pytest.raises(ConfigError, match="larger"):
        read_pin(f"file:{path}", token_label=LABEL)


def test_missing_and_relative_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot open"):
        read_pin(f"file:{tmp_path / 'absent'}", token_label=LABEL)
    with pytest.raises(ConfigError, match="absolute"):
        read_pin("file:relative/pin", token_label=LABEL)


@pytest.mark.parametrize("source", ["", "env:PIN", "file", "KEYRING", "argv"])
def test_unknown_source_lists_allowed_forms(source: str) -> None:
    with pytest.raises(ConfigError) as info:
        read_pin(source, token_label=LABEL)
    for form in ("keyring", "file:", "prompt"):
        assert form in str(info.value)


def test_keyring_round_trip(memory_keyring: MemoryKeyring) -> None:
    store_pin_in_keyring(LABEL, bytearray(b"424242"))
    assert memory_keyring.items == {("vaultd", f"pkcs11:{LABEL}"): "424242"}
    pin = read_pin("keyring", token_label=LABEL)
    assert isinstance(pin, bytearray) and pin == b"424242"


def test_keyring_without_entry_says_how_to_store(memory_keyring: MemoryKeyring) -> None:
    with pytest.raises(ConfigError) as info:
        read_pin("keyring", token_label=LABEL)
    assert "vaultd pin store" in str(info.value)
    assert f"pkcs11:{LABEL}" in str(info.value)


def test_unusable_keyring_is_config_error() -> None:
    previous = keyring.get_keyring()
    keyring.set_keyring(keyring.backends.fail.Keyring())
    try:
        with pytest.raises(ConfigError, match="keyring"):
            read_pin("keyring", token_label=LABEL)
        with pytest.raises(ConfigError, match="keyring"):
            store_pin_in_keyring(LABEL, "1234")
    finally:
        keyring.set_keyring(previous)


def _fake_tty_open(monkeypatch: pytest.MonkeyPatch, *, available: bool) -> None:
    """Fake /dev/tty: the test runner may or may not have a controlling terminal."""
    real_open = os.open

    def fake_open(path: str, flags: int, mode: int = 0o777) -> int:
        if path == "/dev/tty":
            if not available:
                raise OSError(6, "No such device or address")
            return real_open(os.devnull, os.O_RDWR)
        return real_open(path, flags, mode)

    monkeypatch.setattr(os, "open", fake_open)


def test_prompt_without_terminal_is_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_tty_open(monkeypatch, available=False)
    with pytest.raises(ConfigError, match="terminal"):
        read_pin("prompt", token_label=LABEL)


def test_prompt_reads_the_typed_pin(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_tty_open(monkeypatch, available=True)
    prompts: list[str] = []

    def fake_getpass(prompt: str) -> str:
        """Stands in for the human at the terminal."""
        prompts.append(prompt)
        return "555111"

    monkeypatch.setattr(pin_module.getpass, "getpass", fake_getpass)
    assert read_pin("prompt", token_label=LABEL) == b"555111"
    assert prompts and LABEL in prompts[0]
