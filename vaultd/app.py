"""Composition root: settings -> adapters.  The only module that names concrete adapters.

The vault key comes from a PKCS#11 token (``keystore = "pkcs11"``, the default) or from an
allowlisted ``vaultd.keystore`` plugin; either way callers get a :class:`SealingKey`: the
``KeyWrapper`` and ``GenerationAnchor`` ports plus the audit MAC, ``inspect`` and ``close``.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from vaultd.core.ports import SealingKey
from vaultd.errors import ConfigError, PluginError
from vaultd.keys.keystore import KeyStoreKey
from vaultd.mfa.plugin_codes import PluginCodeSource
from vaultd.plugin.api import CodeSource, KeyStoreBacking

if TYPE_CHECKING:
    from vaultd.core.otp_ledger import OtpLedger
    from vaultd.core.ports import Clock
    from vaultd.keys.pkcs11 import PinState
    from vaultd.plugin.registry import LoadedPlugins
    from vaultd.settings import Settings
    from vaultd.store.files import SealedStore

STORE_FILE = "store.vault"
STATE_FILE = "state.json"
LOCK_FILE = "store.lock"


PKCS11 = "pkcs11"
"""The ``keystore`` setting's value for a PKCS#11 token."""


OATH_PLUGIN = "yubikey-oath"
"""The entry-point name of the YubiKey OATH code source."""


def oath_code_source(
    settings: Settings,
    plugins: LoadedPlugins,
    ledger: OtpLedger,
    clock: Clock,
    *,
    on_touch: Callable[[str], None],
) -> PluginCodeSource | None:
    """The ledgered YubiKey OATH code source, or ``None`` when it is not in ``plugins.allow``.

    ``PluginError`` (PLUGIN_UNAVAILABLE) when it is allowlisted but did not load.
    """
    from vaultd.plugin.registry import Kind, allows

    if not allows(settings.plugins.allow, Kind.MFA, OATH_PLUGIN):
        return None
    plugin = plugins.require(Kind.MFA, OATH_PLUGIN)
    if not isinstance(plugin, CodeSource):
        raise PluginError(
            f"plugin mfa/{OATH_PLUGIN} does not compute codes for a given time; install "
            "the yubikey-oath plugin shipped with vaultd"
        )
    names = settings.plugins.yubikey_oath_names
    return PluginCodeSource(plugin.configured(names=names, on_touch=on_touch), ledger, clock)


def module_path(settings: Settings) -> str:
    """The allowlisted, safely installed PKCS#11 module (docs/threat-model.md T25)."""
    from vaultd.keys.pkcs11 import DEFAULT_MODULE_ALLOWLIST, check_module_path

    if not settings.pkcs11.module:
        raise ConfigError(
            'pkcs11.module is not set: add `[pkcs11] module = "/path/to/module.so"` to the '
            "config (for example /usr/lib/softhsm/libsofthsm2.so)"
        )
    allow = (*DEFAULT_MODULE_ALLOWLIST, *settings.pkcs11.module_allowlist)
    return check_module_path(settings.pkcs11.module, allow)


def uses_token(settings: Settings) -> bool:
    """Whether the vault key is in a PKCS#11 token (and so needs a module and a PIN)."""
    return settings.keystore == PKCS11


def token_pin_state(settings: Settings) -> PinState:
    """The token's PIN flags, read before any login (``vaultd doctor`` never guesses)."""
    from vaultd.keys.pkcs11 import read_pin_state

    return read_pin_state(module_path(settings), settings.pkcs11.token_label)


def read_pin(settings: Settings) -> bytearray:
    """The token PIN from ``pkcs11.pin_source``."""
    from vaultd.keys.pin import read_pin as _read_pin

    return _read_pin(settings.pkcs11.pin_source, token_label=settings.pkcs11.token_label)


def open_token(
    settings: Settings,
    pin: bytearray,
    *,
    create_key: bool = False,
    confirm_final_try: bool = False,
) -> SealingKey:
    """Log in to the token and check its vault key, under ``pkcs11.scheme``.

    A token at its final PIN try is logged into only with ``confirm_final_try``, which only a
    person's typed confirmation may set (``HsmPinFinalTry`` otherwise; docs/threat-model.md T9).
    """
    from vaultd.keys.schemes import open_token_key

    return open_token_key(
        module_path(settings),
        settings.pkcs11.token_label,
        settings.pkcs11.key_label,
        pin,
        scheme=settings.pkcs11.scheme,
        create_key=create_key,
        confirm_final_try=confirm_final_try,
    )


def open_key(
    settings: Settings,
    pin: bytearray,
    *,
    create_key: bool = False,
    confirm_final_try: bool = False,
) -> SealingKey:
    """The vault key ``keystore`` names: the token (logged in with ``pin``) or a key store.

    A key store ignores ``pin`` and ``confirm_final_try`` and makes its keys on first use,
    whatever ``create_key``.
    """
    if uses_token(settings):
        return open_token(settings, pin, create_key=create_key, confirm_final_try=confirm_final_try)
    return open_keystore(settings)


def open_keystore(settings: Settings) -> KeyStoreKey:
    """The allowlisted key store plugin named by ``keystore``, opened on its key.

    ``PluginError`` when it did not load or cannot anchor the store generation and MAC the
    audit log; ``HsmError`` subclasses from the plugin when its key cannot be had.
    """
    from vaultd.plugin.api import KeyStore, KeyStoreConfig
    from vaultd.plugin.registry import Kind, load_plugins

    name = settings.keystore
    plugin = load_plugins(settings.plugins.allow, (Kind.KEYSTORE,)).require(Kind.KEYSTORE, name)
    if not isinstance(plugin, KeyStore):  # the registry checked this; it narrows the type
        raise PluginError(f"plugin keystore/{name} is not a key store")
    backing = plugin.open(KeyStoreConfig(key_label=settings.keystore_key_label))
    if not isinstance(backing, KeyStoreBacking):
        raise PluginError(
            f"key store {name!r} keeps no store generation or audit MAC key, so it cannot "
            'hold a vault; use keystore = "pkcs11" or a key store that does'
        )
    return KeyStoreKey(name, backing, is_hardware=plugin.is_hardware)


def prepare_data_dir(settings: Settings) -> Path:
    """Create (0700) or check the data dir."""
    from vaultd.store.atomic import check_private, ensure_private_dir

    ensure_private_dir(settings.data_dir)
    check_private(settings.data_dir, is_dir=True)
    return settings.data_dir


def open_store(settings: Settings, token: SealingKey) -> SealedStore:
    """The sealed store in the data dir, anchored and index-tagged by the token (or key store)."""
    from vaultd.store.files import SealedStore
    from vaultd.system.clock import SystemClock

    data_dir = prepare_data_dir(settings)
    return SealedStore(data_dir / STORE_FILE, token, token, SystemClock(), authenticator=token)


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
class OpenStore:
    """A logged-in vault key and its store, for one CLI command."""

    token: SealingKey
    store: SealedStore


@contextmanager
def opened_vault(settings: Settings, *, create_key: bool = False) -> Iterator[OpenStore]:
    """Read the PIN, log in, open the store; log out and wipe the PIN afterwards.

    A key store plugin needs no PIN and no module.
    """
    pin = bytearray()
    if uses_token(settings):
        module_path(settings)  # refuse a bad module before asking for a PIN
        pin = read_pin(settings)
    try:
        token = open_key(settings, pin, create_key=create_key)
    finally:
        pin[:] = bytes(len(pin))
    try:
        with store_lock(settings):
            yield OpenStore(token, open_store(settings, token))
    finally:
        token.close()
