"""Key store: a software AES-256 key kept in the OS keyring (entry point ``keyring``).

WEAKER THAN A TOKEN. The key is read into process memory and is only as safe as the user
account and its keyring: anything that can read the keyring or the daemon's memory can open
every record. ``is_hardware`` is ``False``, a warning is logged whenever it is built, and it is
never the default: use it only where no PKCS#11 token is available.

The keyring entry (service ``vaultd``, user ``KEY_LABEL``) holds ``v1:KEY_ID:BASE64_KEY``; a
random key and id are created on first use. So that the store can be anchored and the audit
log MACed as with a token, two more entries sit beside it: ``KEY_LABEL-audit`` (an HMAC-SHA256
key, same format) and ``KEY_LABEL-generation`` (``v1:N``, the store generation).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import re
from collections.abc import Callable
from typing import ClassVar

import keyring
import keyring.errors
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from keyring.backends import fail

from vaultd.plugin.api import (
    PLUGIN_API_VERSION,
    AesGcmKey,
    KeyStoreConfig,
    KeyStoreUnavailable,
)

log = logging.getLogger(__name__)

SERVICE = "vaultd"
_ENTRY_RE = re.compile(r"^v1:(keyring-[0-9a-f]{16}):([A-Za-z0-9+/=]{44})$")
_GENERATION_RE = re.compile(r"^v1:(0|[1-9][0-9]{0,19})$")


class KeyringVaultKey(AesGcmKey):
    """The vault key plus what a vault needs beside it: an audit MAC and the store generation.

    The generation anchor in the keyring is only as safe as the keyring itself.
    """

    def __init__(self, key: bytes, key_id: str, *, mac_key: bytes, generation_user: str) -> None:
        super().__init__(key, key_id)
        self._mac_key = mac_key
        self._generation_user = generation_user

    def mac(self, data: bytes) -> bytes:
        """HMAC-SHA256 of ``data`` under the audit key (32 bytes)."""
        return hmac.new(self._mac_key, data, hashlib.sha256).digest()

    def read_generation(self) -> int:
        """The store generation kept in the keyring (0 when none)."""
        entry = _keyring_call(keyring.get_password, self._generation_user)
        if entry is None:
            return 0
        match = _GENERATION_RE.match(entry)
        if match is None:
            raise KeyStoreUnavailable(
                f"the keyring entry {SERVICE}/{self._generation_user} is not a store generation "
                "(expected v1:N); restore it from a backup"
            )
        return int(match[1])

    def write_generation(self, value: int) -> None:
        """Keep ``value`` as the store generation (the caller checks it moves forward)."""
        _keyring_call(keyring.set_password, self._generation_user, f"v1:{value}")


class KeyringKeyStore:
    """A software key store over the ``keyring`` library; weaker than a token."""

    PLUGIN_API_VERSION = PLUGIN_API_VERSION
    is_hardware: ClassVar[bool] = False

    def __init__(self) -> None:
        log.warning(
            "SOFTWARE KEY STORE loaded: the vault key lives in the OS keyring and process "
            "memory, not in a hardware token; anyone who can read this account's keyring can "
            "open every record"
        )

    def is_available(self) -> bool:
        """False when keyring has no usable backend (headless, no Secret Service)."""
        return not isinstance(keyring.get_keyring(), fail.Keyring)

    def open(self, config: KeyStoreConfig) -> KeyringVaultKey:
        """The wrapper over ``config.key_label``'s key, created on first use, with its audit
        key and store generation."""
        label = config.key_label
        key_id, key = _key(label)
        _, mac_key = _key(f"{label}-audit")
        return KeyringVaultKey(key, key_id, mac_key=mac_key, generation_user=f"{label}-generation")


def _keyring_call(fn: Callable[..., str | None], *args: str) -> str | None:
    """Call ``keyring`` on the vaultd service, turning its failures into KeyStoreUnavailable."""
    try:
        return fn(SERVICE, *args)
    except keyring.errors.KeyringError as exc:
        raise KeyStoreUnavailable(
            f"the OS keyring failed for {SERVICE}/{args[0]} ({type(exc).__name__}); "
            "unlock or configure a keyring backend, or use a PKCS#11 token"
        ) from None


def _key(user: str) -> tuple[str, bytes]:
    """The id and 32-byte key of the entry ``user``, created on first use."""
    entry = _keyring_call(keyring.get_password, user)
    if entry is None:
        key_id = f"keyring-{os.urandom(8).hex()}"
        key = AESGCM.generate_key(bit_length=256)
        entry = f"v1:{key_id}:{base64.b64encode(key).decode()}"
        _keyring_call(keyring.set_password, user, entry)
        log.warning("created a new software key %s (%s) in the OS keyring", key_id, user)
    match = _ENTRY_RE.match(entry)
    if match is None:
        raise KeyStoreUnavailable(
            f"the keyring entry {SERVICE}/{user} is not a vaultd key (expected "
            "v1:KEY_ID:KEY); restore it from a backup or choose another key_label"
        )
    try:
        key = base64.b64decode(match[2], validate=True)
    except binascii.Error:
        key = b""
    if len(key) != 32:
        raise KeyStoreUnavailable(
            f"the keyring entry {SERVICE}/{user} does not hold a 32-byte key; restore it "
            "from a backup or choose another key_label"
        )
    return match[1], key
