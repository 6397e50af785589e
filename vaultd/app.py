"""Composition root: settings -> adapters.  The only module that names concrete adapters."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from vaultd.errors import ConfigError

if TYPE_CHECKING:
    from vaultd.hsm.pkcs11 import Pkcs11Vault
    from vaultd.settings import Settings
    from vaultd.store.files import SealedStore

STORE_FILE = "store.vault"
STATE_FILE = "state.json"
LOCK_FILE = "store.lock"


def module_path(settings: Settings) -> str:
    """The allowlisted, safely installed PKCS#11 module (THREATS T25)."""
    from vaultd.hsm.pkcs11 import DEFAULT_MODULE_ALLOWLIST, check_module_path

    if not settings.pkcs11.module:
        raise ConfigError(
            'pkcs11.module is not set: add `[pkcs11] module = "/path/to/module.so"` to the '
            "config (for example /usr/lib/softhsm/libsofthsm2.so)"
        )
    allow = (*DEFAULT_MODULE_ALLOWLIST, *settings.pkcs11.module_allowlist)
    return check_module_path(settings.pkcs11.module, allow)


def read_pin(settings: Settings) -> bytearray:
    """The token PIN from ``pkcs11.pin_source``."""
    from vaultd.hsm.pin import read_pin as _read_pin

    return _read_pin(settings.pkcs11.pin_source, token_label=settings.pkcs11.token_label)


def open_token(settings: Settings, pin: bytearray, *, create_key: bool = False) -> Pkcs11Vault:
    """Log in to the token and check the key-encryption key."""
    from vaultd.hsm.pkcs11 import Pkcs11Vault

    return Pkcs11Vault.open(
        module_path(settings),
        settings.pkcs11.token_label,
        settings.pkcs11.key_label,
        pin,
        create_key=create_key,
    )


def prepare_data_dir(settings: Settings) -> Path:
    """Create (0700) or check the data dir."""
    from vaultd.store.atomic import check_private, ensure_private_dir

    ensure_private_dir(settings.data_dir)
    check_private(settings.data_dir, is_dir=True)
    return settings.data_dir


def open_store(settings: Settings, token: Pkcs11Vault) -> SealedStore:
    """The sealed store in the data dir, anchored in the token."""
    from vaultd.clock import SystemClock
    from vaultd.store.files import SealedStore

    data_dir = prepare_data_dir(settings)
    return SealedStore(data_dir / STORE_FILE, token, token, SystemClock())


@contextmanager
def store_lock(settings: Settings) -> Iterator[None]:
    """Serialise read-modify-write of the store across processes (CLI and daemon)."""
    data_dir = prepare_data_dir(settings)
    fd = os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@dataclass
class OpenVault:
    """A logged-in token and its store, for one CLI command."""

    token: Pkcs11Vault
    store: SealedStore


@contextmanager
def opened_vault(settings: Settings, *, create_key: bool = False) -> Iterator[OpenVault]:
    """Read the PIN, log in, open the store; log out and wipe the PIN afterwards."""
    module_path(settings)  # refuse a bad module before asking for a PIN
    pin = read_pin(settings)
    try:
        token = open_token(settings, pin, create_key=create_key)
    finally:
        pin[:] = bytes(len(pin))
    try:
        with store_lock(settings):
            yield OpenVault(token, open_store(settings, token))
    finally:
        token.close()
