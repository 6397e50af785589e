"""Composition root: settings -> adapters.  The only module that names concrete adapters.

The vault key comes from a PKCS#11 token (``keystore = "pkcs11"``, the default) or from an
allowlisted ``vaultd.keystore`` plugin; either way callers get a :class:`VaultKey`: the
``KeyWrapper`` and ``GenerationAnchor`` ports plus the audit MAC, ``inspect`` and ``close``.
"""

from __future__ import annotations

import fcntl
import hmac
import math
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from vaultd.core.ports import GenerationAnchor, KeyWrapper
from vaultd.errors import (
    AuditTampered,
    CodeReused,
    ConfigError,
    MfaError,
    PluginError,
    Sealed,
    StoreRollback,
)

if TYPE_CHECKING:
    from vaultd.core.otp_ledger import OtpLedger
    from vaultd.core.ports import Clock, CodeSource
    from vaultd.hsm.pkcs11 import Pkcs11Vault
    from vaultd.registry import LoadedPlugins
    from vaultd.settings import Settings
    from vaultd.store.files import SealedStore

STORE_FILE = "store.vault"
STATE_FILE = "state.json"
LOCK_FILE = "store.lock"


PKCS11 = "pkcs11"
"""The ``keystore`` setting's value for a PKCS#11 token."""


class VaultKey(KeyWrapper, GenerationAnchor, Protocol):
    """What a logged-in vault key offers: :class:`~vaultd.hsm.pkcs11.Pkcs11Vault` or a
    :class:`KeyStoreVault`."""

    @property
    def sealed(self) -> bool:
        """True once closed."""
        ...

    def mac(self, data: bytes) -> bytes:
        """HMAC-SHA256 of ``data`` under the audit key."""
        ...

    def mac_verify(self, data: bytes, tag: bytes) -> None:
        """Raise ``AuditTampered`` unless ``tag`` is the MAC of ``data``."""
        ...

    def inspect(self) -> dict[str, object]:
        """Non-secret facts for ``vaultd doctor``."""
        ...

    def close(self) -> None:
        """Drop the key; later calls raise ``Sealed``."""
        ...


@runtime_checkable
class KeyStoreBacking(Protocol):
    """What a key store plugin's opened wrapper must also offer to carry a vault.

    The key store keeps the audit MAC key and the store generation next to the vault key;
    :class:`KeyStoreVault` adds the checks (constant-time verify, no rollback).
    """

    @property
    def key_id(self) -> str: ...

    def random(self, n: int) -> bytes: ...

    def encrypt(self, iv: bytes, plaintext: bytes, aad: bytes) -> bytes: ...

    def decrypt(self, iv: bytes, ciphertext: bytes, aad: bytes) -> bytes: ...

    def mac(self, data: bytes) -> bytes:
        """HMAC-SHA256 under a key kept by the store, apart from the vault key."""
        ...

    def read_generation(self) -> int:
        """The stored generation (0 when none)."""
        ...

    def write_generation(self, value: int) -> None:
        """Store ``value`` as the generation (no checks)."""
        ...


class KeyStoreVault:
    """A vault key held by a key store plugin, with the same surface as ``Pkcs11Vault``."""

    def __init__(self, name: str, backing: KeyStoreBacking, *, is_hardware: bool) -> None:
        self._name = name
        self._backing: KeyStoreBacking | None = backing
        self._key_id = backing.key_id
        self.is_hardware = is_hardware

    @property
    def key_id(self) -> str:
        """The key store's non-secret key id."""
        return self._key_id

    @property
    def sealed(self) -> bool:
        """True once closed."""
        return self._backing is None

    def _live(self) -> KeyStoreBacking:
        if self._backing is None:
            raise Sealed("the vault is sealed (locked); run `vaultd unlock`")
        return self._backing

    def random(self, n: int) -> bytes:
        """``n`` random bytes."""
        return self._live().random(n)

    def encrypt(self, iv: bytes, plaintext: bytes, aad: bytes) -> bytes:
        """AES-256-GCM, tag appended."""
        return self._live().encrypt(iv, plaintext, aad)

    def decrypt(self, iv: bytes, ciphertext: bytes, aad: bytes) -> bytes:
        """Inverse of :meth:`encrypt`; ``RecordCorrupt`` on a mismatch."""
        return self._live().decrypt(iv, ciphertext, aad)

    def mac(self, data: bytes) -> bytes:
        """HMAC-SHA256 under the key store's audit key."""
        return self._live().mac(data)

    def mac_verify(self, data: bytes, tag: bytes) -> None:
        """Raise ``AuditTampered`` unless ``tag`` is the MAC of ``data`` (constant time)."""
        if not hmac.compare_digest(self.mac(data), bytes(tag)):
            raise AuditTampered("an audit record's MAC does not match; the audit log was altered")

    def read_generation(self) -> int:
        """The store generation kept by the key store."""
        return self._live().read_generation()

    def advance_generation(self, value: int) -> None:
        """Record ``value``; ``StoreRollback`` unless it exceeds the current generation."""
        backing = self._live()
        current = backing.read_generation()
        if value <= current:
            raise StoreRollback(
                f"refusing to move the store generation from {current} to {value}; the store "
                f"is older than key store {self._name!r} records (restore the newest store)"
            )
        backing.write_generation(value)

    def inspect(self) -> dict[str, object]:
        """Non-secret facts for ``vaultd doctor``."""
        return {"keystore": self._name, "hardware": self.is_hardware, "key_id": self._key_id}

    def close(self) -> None:
        """Drop the key store's handle; later calls raise ``Sealed``."""
        self._backing = None


OATH_PLUGIN = "yubikey-oath"
"""The entry-point name of the YubiKey OATH code source."""


@runtime_checkable
class OathCodeSource(Protocol):
    """A code source plugin that knows its serials and computes the code of any time."""

    def configured(
        self, *, names: Mapping[str, str], on_touch: Callable[[str], None]
    ) -> OathCodeSource:
        """A copy using ``names`` (serial -> credential id) and telling ``on_touch`` to ask."""
        ...

    def has_seed(self, serial: str) -> bool: ...

    def code_at(self, serial: str, timestamp: int) -> str: ...


class PluginCodeSource:
    """The ``CodeSource`` port over an :class:`OathCodeSource`: each (serial, step) is given
    once, the next step when the current one is spent, as the OTP ledger says (THREATS T11)."""

    def __init__(self, plugin: OathCodeSource, ledger: OtpLedger, clock: Clock) -> None:
        self._plugin = plugin
        self._ledger = ledger
        self._clock = clock

    def has_seed(self, serial: str) -> bool:
        """Whether the plugin can give codes for ``serial``."""
        return self._plugin.has_seed(serial)

    def code_for(self, serial: str) -> tuple[str, float]:
        """A code for the first unused step and the seconds until that step starts."""
        from vaultd.core.otp_ledger import STEP_SECONDS, step_for

        now = self._clock.now()
        current = step_for(now)
        step = self._ledger.next_unused_step(serial, current)
        if step is None:
            wait = math.ceil((current + 1) * STEP_SECONDS - now.timestamp())
            raise CodeReused(
                "the current and the next MFA code for this device were already used; "
                f"try again in {wait} s"
            )
        code = self._plugin.code_at(serial, step * STEP_SECONDS)
        self._ledger.check_and_mark(serial, step, code=code)
        return code, max(0.0, step * STEP_SECONDS - now.timestamp())


class ChainedCodeSource:
    """``CodeSource`` ports tried in order: the first that has the serial gives its codes."""

    def __init__(self, *sources: CodeSource) -> None:
        self._sources = sources

    def has_seed(self, serial: str) -> bool:
        """Whether any source has ``serial``."""
        return any(source.has_seed(serial) for source in self._sources)

    def code_for(self, serial: str) -> tuple[str, float]:
        """The first source's code for ``serial``; ``MfaError`` when none has it."""
        for source in self._sources:
            if source.has_seed(serial):
                return source.code_for(serial)
        raise MfaError(
            f"no code source has MFA device {serial}: store its seed with `vaultd mfa add-totp` "
            "or add it to the YubiKey"
        )


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
    from vaultd.registry import Kind

    if OATH_PLUGIN not in settings.plugins.allow:
        return None
    plugin = plugins.require(Kind.MFA, OATH_PLUGIN)
    if not isinstance(plugin, OathCodeSource):
        raise PluginError(
            f"plugin mfa/{OATH_PLUGIN} does not compute codes for a given time; install "
            "the yubikey-oath plugin shipped with vaultd"
        )
    names = settings.plugins.yubikey_oath_names
    return PluginCodeSource(plugin.configured(names=names, on_touch=on_touch), ledger, clock)


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


def uses_token(settings: Settings) -> bool:
    """Whether the vault key is in a PKCS#11 token (and so needs a module and a PIN)."""
    return settings.keystore == PKCS11


def read_pin(settings: Settings) -> bytearray:
    """The token PIN from ``pkcs11.pin_source``."""
    from vaultd.hsm.pin import read_pin as _read_pin

    return _read_pin(settings.pkcs11.pin_source, token_label=settings.pkcs11.token_label)


def open_token(
    settings: Settings,
    pin: bytearray,
    *,
    create_key: bool = False,
    confirm_final_try: bool = False,
) -> Pkcs11Vault:
    """Log in to the token and check the key-encryption key.

    A token at its final PIN try is logged into only with ``confirm_final_try``, which only a
    person's typed confirmation may set (``HsmPinFinalTry`` otherwise; THREATS T9).
    """
    from vaultd.hsm.pkcs11 import Pkcs11Vault

    return Pkcs11Vault.open(
        module_path(settings),
        settings.pkcs11.token_label,
        settings.pkcs11.key_label,
        pin,
        create_key=create_key,
        confirm_final_try=confirm_final_try,
    )


def open_key(
    settings: Settings,
    pin: bytearray,
    *,
    create_key: bool = False,
    confirm_final_try: bool = False,
) -> VaultKey:
    """The vault key ``keystore`` names: the token (logged in with ``pin``) or a key store.

    A key store ignores ``pin`` and ``confirm_final_try`` and makes its keys on first use,
    whatever ``create_key``.
    """
    if uses_token(settings):
        return open_token(settings, pin, create_key=create_key, confirm_final_try=confirm_final_try)
    return open_keystore(settings)


def open_keystore(settings: Settings) -> KeyStoreVault:
    """The allowlisted key store plugin named by ``keystore``, opened on its key.

    ``PluginError`` when it did not load or cannot anchor the store generation and MAC the
    audit log; ``HsmError`` subclasses from the plugin when its key cannot be had.
    """
    from vaultd.plugin_api import KeyStore, KeyStoreConfig
    from vaultd.registry import Kind, load_plugins

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
    return KeyStoreVault(name, backing, is_hardware=plugin.is_hardware)


def prepare_data_dir(settings: Settings) -> Path:
    """Create (0700) or check the data dir."""
    from vaultd.store.atomic import check_private, ensure_private_dir

    ensure_private_dir(settings.data_dir)
    check_private(settings.data_dir, is_dir=True)
    return settings.data_dir


def open_store(settings: Settings, token: VaultKey) -> SealedStore:
    """The sealed store in the data dir, anchored in the token (or key store)."""
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
    """A logged-in vault key and its store, for one CLI command."""

    token: VaultKey
    store: SealedStore


@contextmanager
def opened_vault(settings: Settings, *, create_key: bool = False) -> Iterator[OpenVault]:
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
            yield OpenVault(token, open_store(settings, token))
    finally:
        token.close()
