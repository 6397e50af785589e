"""The only vaultd module plugins import: plugin Protocols, the event type, ports and errors.

The Protocols here are exactly what the daemon calls. A plugin is an object returned by calling
(with no arguments) what its entry point names. It lives in one of three entry-point groups:

- ``vaultd.mfa``: a :class:`CodeSource` (the AWS TokenCode of an MFA device at a given time);
- ``vaultd.notify``: a :class:`Notifier`;
- ``vaultd.keystore``: a :class:`KeyStore` (where the vault key lives), whose ``open`` gives a
  :class:`KeyStoreBacking` (seal and open, an audit MAC, the store generation).

vaultd loads a plugin only when ``plugins.allow`` lists it as ``GROUP/NAME`` (``notify/desktop``;
``GROUP/NAME@DISTRIBUTION`` where two distributions offer one name), and then calls
``is_available()``; a plugin that fails either way is skipped and reported, never fatal.
A plugin may set ``PLUGIN_API_VERSION`` on the object it returns: vaultd refuses a plugin built
for another version. ``vaultd.testing.contracts`` has a pytest suite per Protocol.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import ClassVar, Protocol, runtime_checkable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from vaultd.core.model import CODE_RE, PROFILE_NAME_RE
from vaultd.core.ports import KeyWrapper, RandomSource
from vaultd.errors import (
    ApprovalTimeout,
    ApprovalUnavailable,
    CodeMalformed,
    CodeReused,
    ConfigError,
    Denied,
    GateError,
    HsmError,
    KeyStoreUnavailable,
    MfaError,
    PluginError,
    RecordCorrupt,
    VaultError,
)

__all__ = [
    "CODE_RE",
    "EVENT_NAME_RE",
    "MAX_MESSAGE_CHARS",
    "PLUGIN_API_VERSION",
    "PROFILE_NAME_RE",
    "AesGcmKey",
    "ApprovalTimeout",
    "ApprovalUnavailable",
    "CodeMalformed",
    "CodeReused",
    "CodeSource",
    "ConfigError",
    "Denied",
    "GateError",
    "HsmError",
    "KeyStore",
    "KeyStoreBacking",
    "KeyStoreConfig",
    "KeyStoreUnavailable",
    "KeyWrapper",
    "MfaError",
    "Notifier",
    "NotifyEvent",
    "Plugin",
    "PluginError",
    "RandomSource",
    "RecordCorrupt",
    "Severity",
    "VaultError",
]

PLUGIN_API_VERSION = 1
"""Bumped on any incompatible change to this module."""

EVENT_NAME_RE = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")
MAX_MESSAGE_CHARS = 1000


class Severity(StrEnum):
    """How urgent a notification is."""

    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


@dataclass(frozen=True, slots=True)
class NotifyEvent:
    """Something a person may want to know about, such as ``approval.opened``.

    It carries no secret by construction: an event name, a profile name, a severity and a
    human-readable message (at most :data:`MAX_MESSAGE_CHARS` characters) built by the daemon.
    """

    event: str
    profile: str
    severity: Severity
    message: str

    def __post_init__(self) -> None:
        if not EVENT_NAME_RE.match(self.event):
            raise ValueError("NotifyEvent.event must match [a-z][a-z0-9_.-]{0,63}")
        if self.profile and not PROFILE_NAME_RE.match(self.profile):
            raise ValueError("NotifyEvent.profile must be empty or a profile name")
        if len(self.message) > MAX_MESSAGE_CHARS:
            raise ValueError(f"NotifyEvent.message is longer than {MAX_MESSAGE_CHARS} characters")
        object.__setattr__(self, "severity", Severity(self.severity))

    def to_json(self) -> dict[str, str]:
        """The event as a JSON-ready mapping (the webhook body)."""
        return {
            "event": self.event,
            "profile": self.profile,
            "severity": self.severity.value,
            "message": self.message,
        }


@runtime_checkable
class Plugin(Protocol):
    """What every plugin has: a cheap check that it can work here."""

    def is_available(self) -> bool:
        """Whether the plugin can work here (a tool or device present, a URL configured)."""
        ...


@runtime_checkable
class Notifier(Plugin, Protocol):
    """Tells a person about an event. Failures are the plugin's to log; vaultd ignores them.

    vaultd calls ``notify`` from a worker thread with a timeout, so a slow notifier never
    delays a release; it should still return quickly and must not raise on odd text.
    """

    def notify(self, event: NotifyEvent) -> None:
        """Deliver (or queue) one event."""
        ...


@runtime_checkable
class CodeSource(Plugin, Protocol):
    """Computes the six-digit AWS MFA TokenCode of an MFA device for any 30 s time step.

    The daemon asks ``has_seed`` to pick a source, then ``code_at`` for the first step its
    replay ledger has not used (a code is never sent twice, docs/threat-model.md T11).
    """

    def configured(
        self, *, names: Mapping[str, str], on_touch: Callable[[str], None]
    ) -> CodeSource:
        """A copy using ``names`` (serial -> the source's own id for it; from the settings) and
        calling ``on_touch(message)`` just before it waits for a person (a touch)."""
        ...

    def has_seed(self, serial: str) -> bool:
        """Whether this source can give codes for ``serial``; ``False``, not an error, when
        it simply does not know it (an ``MfaError`` subclass when it cannot tell)."""
        ...

    def code_at(self, serial: str, timestamp: int) -> str:
        """The code (``^[0-9]{6}$``) of the step holding ``timestamp`` (Unix seconds); an
        ``MfaError`` subclass when none can be had."""
        ...


@dataclass(frozen=True, slots=True)
class KeyStoreConfig:
    """What a key store needs to find its key: the key's label and plugin-specific options."""

    key_label: str = "vaultd-kek"
    options: Mapping[str, str] = field(default_factory=dict)


@runtime_checkable
class KeyStoreBacking(KeyWrapper, Protocol):
    """What a key store's ``open`` gives: a vault key plus what a vault keeps beside it.

    AES-256-GCM seal and open (the :class:`KeyWrapper` port), an HMAC-SHA256 key for the audit
    log apart from the vault key, and the store generation. vaultd adds the checks (constant
    time MAC verify; the generation only moves forward).
    """

    def mac(self, data: bytes) -> bytes:
        """HMAC-SHA256 of ``data`` (32 bytes) under the store's audit key."""
        ...

    def read_generation(self) -> int:
        """The stored generation (0 when none was written)."""
        ...

    def write_generation(self, value: int) -> None:
        """Keep ``value`` as the generation (vaultd checks that it moves forward)."""
        ...


@runtime_checkable
class KeyStore(Plugin, Protocol):
    """Holds the vault key and opens it.

    ``is_hardware`` is ``False`` for software stores: the key is then only as safe as the
    account that runs vaultd, and vaultd says so wherever the store is shown.
    """

    is_hardware: ClassVar[bool]

    def open(self, config: KeyStoreConfig) -> KeyStoreBacking:
        """The configured key, created on first use; an ``HsmError`` subclass on failure."""
        ...


class AesGcmKey:
    """AES-256-GCM over a key held in process memory: the :class:`KeyWrapper` of software
    key stores (and of vaultd's test fakes). It protects only as well as the process does.

    ``random`` supplies IVs; pin it only to reproduce test vectors.
    """

    def __init__(
        self, key: bytes, key_id: str, *, random: Callable[[int], bytes] = os.urandom
    ) -> None:
        self._aead = AESGCM(key)
        self._key_id = key_id
        self._random = random

    @property
    def key_id(self) -> str:
        """The non-secret id given at construction."""
        return self._key_id

    def random(self, n: int) -> bytes:
        """``n`` bytes from the configured source."""
        return self._random(n)

    def encrypt(self, iv: bytes, plaintext: bytes, aad: bytes) -> bytes:
        """Ciphertext with the 16-byte tag appended."""
        return self._aead.encrypt(iv, plaintext, aad)

    def decrypt(self, iv: bytes, ciphertext: bytes, aad: bytes) -> bytes:
        """Inverse of :meth:`encrypt`; ``RecordCorrupt`` on a wrong tag, IV or AAD."""
        try:
            return self._aead.decrypt(iv, ciphertext, aad)
        except (InvalidTag, ValueError):
            raise RecordCorrupt("sealed record failed authentication (AES-GCM tag)") from None
