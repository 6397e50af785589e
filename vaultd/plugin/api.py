"""The only vaultd module plugins import: plugin Protocols, the event type, ports and errors.

A plugin is an object returned by calling (with no arguments) what its entry point names. It
lives in one of three entry-point groups:

- ``vaultd.mfa``: a :class:`Gate` (a local release check) or a :class:`CodeSource` (the AWS
  TokenCode);
- ``vaultd.notify``: a :class:`Notifier`;
- ``vaultd.keystore``: a :class:`KeyStore` (where the key-encryption key lives).

vaultd loads a plugin only when ``plugins.allow`` lists it as ``GROUP/NAME`` (``notify/desktop``;
``GROUP/NAME@DISTRIBUTION`` where two distributions offer one name), and then calls
``is_available()``; a plugin that fails either way is skipped and reported, never fatal.
A plugin may set ``PLUGIN_API_VERSION`` on the object it returns: vaultd refuses a plugin built
for another version.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import ClassVar, Protocol, runtime_checkable

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
    "ApprovalTimeout",
    "ApprovalUnavailable",
    "CodeMalformed",
    "CodeReused",
    "CodeSource",
    "ConfigError",
    "Denied",
    "Gate",
    "GateError",
    "GateRequest",
    "HsmError",
    "KeyStore",
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


@dataclass(frozen=True, slots=True)
class GateRequest:
    """One release to approve: the approval id, the profile and why it is asked."""

    approval_id: str
    profile: str
    reason: str


@runtime_checkable
class Gate(Plugin, Protocol):
    """A local release check (a touch, a local TOTP). It blocks; vaultd runs it in a thread."""

    def approve(self, request: GateRequest) -> None:
        """Return when the person approved; raise ``Denied``, ``ApprovalTimeout`` or a
        ``GateError`` subclass otherwise. Never return to mean "no"."""
        ...


@runtime_checkable
class CodeSource(Plugin, Protocol):
    """Gives the six-digit AWS MFA TokenCode for an MFA device serial."""

    def code_for(self, serial: str) -> str:
        """A code matching ``^[0-9]{6}$``; raise an ``MfaError`` subclass when none can be had."""
        ...


@dataclass(frozen=True, slots=True)
class KeyStoreConfig:
    """What a key store needs to find its key: the key's label and plugin-specific options."""

    key_label: str = "vaultd-kek"
    options: Mapping[str, str] = field(default_factory=dict)


@runtime_checkable
class KeyStore(Plugin, Protocol):
    """Holds the key-encryption key and opens a :class:`KeyWrapper` over it.

    ``is_hardware`` is ``False`` for software stores: the key is then only as safe as the
    account that runs vaultd, and vaultd says so wherever the store is shown.
    """

    is_hardware: ClassVar[bool]

    def open(self, config: KeyStoreConfig) -> KeyWrapper:
        """The wrapper over the configured key, created on first use; ``HsmError`` on failure."""
        ...


@runtime_checkable
class KeyStoreBacking(Protocol):
    """What a key store plugin's opened wrapper must also offer to carry a vault.

    The key store keeps the audit MAC key and the store generation next to the vault key;
    :class:`KeyStoreKey` adds the checks (constant-time verify, no rollback).
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
