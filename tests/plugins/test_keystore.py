"""The keyring key store. No OS keyring daemon runs here, so keyring is pointed at a fake:
an in-memory backend written below (``keyring.set_keyring``)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import keyring
import pytest
from keyring.backend import KeyringBackend
from keyring.backends import fail
from keyring.errors import KeyringLocked
from vaultd.plugins.keystore_keyring import SERVICE, KeyringKeyStore

from vaultd.errors import KeyStoreUnavailable
from vaultd.plugin.api import KeyStore, KeyStoreConfig
from vaultd.testing.contracts import KeyStoreContract


class MemoryKeyring(KeyringBackend):
    """A fake keyring backend that keeps entries in a dict."""

    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.entries: dict[tuple[str, str], str] = {}
        self.locked = False

    def get_password(self, service: str, username: str) -> str | None:
        if self.locked:
            raise KeyringLocked("locked")
        return self.entries.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.entries[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        del self.entries[(service, username)]


@pytest.fixture
def memory() -> Iterator[MemoryKeyring]:
    previous = keyring.get_keyring()
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    yield backend
    keyring.set_keyring(previous)


class TestKeyringKeyStoreContract(KeyStoreContract):
    @pytest.fixture(autouse=True)
    def _keyring(self, memory: MemoryKeyring) -> None:
        self.memory = memory

    def make_plugin(self) -> KeyStore:
        return KeyringKeyStore()


def test_is_software_and_warns_loudly_when_built(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        store = KeyringKeyStore()
    assert store.is_hardware is False
    assert "SOFTWARE KEY STORE" in caplog.text


def test_entry_holds_a_versioned_key_and_nothing_is_logged_of_it(
    memory: MemoryKeyring, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        wrapper = KeyringKeyStore().open(KeyStoreConfig(key_label="kek"))
    entry = memory.entries[(SERVICE, "kek")]
    version, key_id, secret = entry.split(":")
    assert (version, key_id) == ("v1", wrapper.key_id)
    assert wrapper.key_id in caplog.text
    assert secret not in caplog.text


def test_unavailable_on_the_fail_backend() -> None:
    previous = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    try:
        assert KeyringKeyStore().is_available() is False
    finally:
        keyring.set_keyring(previous)


def test_locked_keyring_raises_keystore_unavailable(memory: MemoryKeyring) -> None:
    memory.locked = True
    with pytest.raises(KeyStoreUnavailable, match="KeyringLocked") as err:
        KeyringKeyStore().open(KeyStoreConfig())
    assert err.value.code == "KEYSTORE_UNAVAILABLE"


@pytest.mark.parametrize(
    "entry",
    ["hunter2", "v1:keyring-0011223344556677:c2hvcnQ=", "v2:keyring-0011223344556677:" + "A" * 44],
)
def test_foreign_or_damaged_entry_is_refused_without_echoing_it(
    memory: MemoryKeyring, entry: str
) -> None:
    memory.entries[(SERVICE, "vaultd-kek")] = entry
    with pytest.raises(KeyStoreUnavailable) as err:
        KeyringKeyStore().open(KeyStoreConfig())
    assert entry not in str(err.value)
    assert memory.entries[(SERVICE, "vaultd-kek")] == entry  # never overwritten
