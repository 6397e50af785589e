"""Key store: a software AES-256 key kept in the OS keyring (entry point ``keyring``).

WEAKER THAN A TOKEN. The key is read into process memory and is only as safe as the user
account and its keyring: anything that can read the keyring or the daemon's memory can open
every record. ``is_hardware`` is ``False``, a warning is logged whenever it is built, and it is
never the default: use it only where no PKCS#11 token is available.

The keyring entry (service ``vaultd``, user ``KEY_LABEL``) holds ``v1:KEY_ID:BASE64_KEY``; a
random key and id are created on first use.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import re
from typing import ClassVar

import keyring
import keyring.errors
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from keyring.backends import fail

from vaultd.plugin_api import (
    PLUGIN_API_VERSION,
    KeyStoreConfig,
    KeyStoreUnavailable,
    KeyWrapper,
    RecordCorrupt,
)

log = logging.getLogger(__name__)

SERVICE = "vaultd"
_ENTRY_RE = re.compile(r"^v1:(keyring-[0-9a-f]{16}):([A-Za-z0-9+/=]{44})$")


class SoftwareKeyWrapper:
    """AES-256-GCM with a key held in process memory (the ``KeyWrapper`` port)."""

    def __init__(self, key: bytes, key_id: str) -> None:
        self._aead = AESGCM(key)
        self._key_id = key_id

    @property
    def key_id(self) -> str:
        """The random, non-secret id stored with the key."""
        return self._key_id

    def random(self, n: int) -> bytes:
        """``n`` bytes from the OS generator."""
        return os.urandom(n)

    def encrypt(self, iv: bytes, plaintext: bytes, aad: bytes) -> bytes:
        """Ciphertext with the 16-byte tag appended."""
        return self._aead.encrypt(iv, plaintext, aad)

    def decrypt(self, iv: bytes, ciphertext: bytes, aad: bytes) -> bytes:
        """Inverse of :meth:`encrypt`; ``RecordCorrupt`` on a wrong tag, IV or AAD."""
        try:
            return self._aead.decrypt(iv, ciphertext, aad)
        except (InvalidTag, ValueError):
            raise RecordCorrupt("sealed record failed authentication (AES-GCM tag)") from None


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

    def open(self, config: KeyStoreConfig) -> KeyWrapper:
        """The wrapper over ``config.key_label``'s key, created on first use."""
        user = config.key_label
        try:
            entry = keyring.get_password(SERVICE, user)
            if entry is None:
                key_id = f"keyring-{os.urandom(8).hex()}"
                key = AESGCM.generate_key(bit_length=256)
                entry = f"v1:{key_id}:{base64.b64encode(key).decode()}"
                keyring.set_password(SERVICE, user, entry)
                log.warning("created a new software vault key %s in the OS keyring", key_id)
        except keyring.errors.KeyringError as exc:
            raise KeyStoreUnavailable(
                f"the OS keyring failed for {SERVICE}/{user} ({type(exc).__name__}); "
                "unlock or configure a keyring backend, or use a PKCS#11 token"
            ) from None
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
        return SoftwareKeyWrapper(key, match[1])
