"""The small typed interfaces the core needs from hardware, disk, network and people.

Port methods take and return domain types, never library objects.  Each adapter translates
its library's errors into :mod:`vaultd.errors` as they come in.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from vaultd.core.model import CodePrompt, LongTermCredentials, SessionCredentials


class Clock(Protocol):
    """Wall time (aware UTC) and monotonic time."""

    def now(self) -> datetime: ...

    def monotonic(self) -> float: ...


class RandomSource(Protocol):
    """Cryptographic random bytes (the token's generator in production)."""

    def random(self, n: int) -> bytes: ...


class KeyWrapper(RandomSource, Protocol):
    """AES-256-GCM with a key that never leaves the token.

    ``encrypt`` returns ciphertext with the 16-byte tag appended; ``decrypt`` raises
    :class:`vaultd.errors.RecordCorrupt` on a wrong tag, IV or AAD.
    """

    @property
    def key_id(self) -> str:
        """A stable, non-secret identifier of the key (bound into every AAD)."""
        ...

    def encrypt(self, iv: bytes, plaintext: bytes, aad: bytes) -> bytes: ...

    def decrypt(self, iv: bytes, ciphertext: bytes, aad: bytes) -> bytes: ...


class GenerationAnchor(Protocol):
    """The store generation counter kept outside the store file (a token data object)."""

    def read_generation(self) -> int | None:
        """The anchored generation; ``None`` when the key has nowhere to keep one (then
        ``advance_generation`` is a no-op and the store has no rollback protection)."""
        ...

    def advance_generation(self, value: int) -> None:
        """Record ``value`` (greater than the current one) as the current generation."""
        ...


class StsClient(Protocol):
    """The STS calls vaultd makes. MFA-bearing calls are never retried."""

    def get_session_token(
        self,
        credentials: LongTermCredentials,
        *,
        duration_seconds: int,
        serial_number: str | None,
        token_code: str | None,
        region: str | None,
    ) -> SessionCredentials: ...

    def assume_role(
        self,
        credentials: LongTermCredentials | SessionCredentials,
        *,
        role_arn: str,
        role_session_name: str,
        duration_seconds: int,
        external_id: str | None,
        serial_number: str | None,
        token_code: str | None,
        region: str | None,
    ) -> SessionCredentials: ...

    def get_federation_token(
        self,
        credentials: LongTermCredentials,
        *,
        name: str,
        duration_seconds: int,
        region: str | None,
    ) -> SessionCredentials: ...

    def assume_root_endpoint(self, region: str) -> str:
        """The Regional endpoint AssumeRoot goes to; ``ConfigError`` for the global one."""
        ...

    def assume_root(
        self,
        credentials: SessionCredentials,
        *,
        target_principal: str,
        task_policy_arn: str,
        duration_seconds: int,
        region: str,
    ) -> SessionCredentials:
        """AssumeRoot on the Regional endpoint with an MFA session; never retried."""
        ...


class Gate(Protocol):
    """A local presence check (FIDO2 touch); blocking, cancellable, raises on refusal."""

    def approve(
        self,
        approval_id: str,
        *,
        require_uv: bool,
        pin: str | None,
        on_prompt: Callable[[], None],
        cancel: threading.Event,
        timeout: float,
    ) -> object: ...


class CodeSource(Protocol):
    """AWS TokenCodes generated from a sealed seed, each time step used once (blocking)."""

    def has_seed(self, serial: str) -> bool: ...

    def code_for(self, serial: str) -> tuple[str, float]:
        """A fresh code and the seconds to wait before its time step starts."""
        ...


class CodePrompter(Protocol):
    """Runs a prompt dialog (pinentry, zenity, ...) that asks for a 6-digit MFA code."""

    async def ask_code(self, prompt: CodePrompt) -> str | None:
        """The code typed, or None when the user cancelled; raises ``PromptFailed`` when the
        dialog cannot run or answers something else.  Cancelling the task closes the dialog."""
        ...


class Notifier(Protocol):
    """Tells the user something happened (desktop notification, webhook); never blocks."""

    def __call__(self, event: str, profile: str, severity: str, message: str) -> None: ...


class SealingKey(KeyWrapper, GenerationAnchor, Protocol):
    """What a logged-in vault key offers: :class:`~vaultd.keys.pkcs11.TokenKey` or a
    :class:`KeyStoreKey`."""

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
