"""The ``CodeSource`` port over code-source plugins, and a chain of code sources."""

from __future__ import annotations

import math

from vaultd.core.otp_ledger import STEP_SECONDS, OtpLedger, step_for
from vaultd.core.ports import Clock, CodeSource
from vaultd.errors import CodeReused, MfaError
from vaultd.plugin import api as plugin_api


class PluginCodeSource:
    """The ``CodeSource`` port over a code source plugin: each (serial, step) is given
    once, the next step when the current one is spent, as the OTP ledger says (docs/threat-model.md
    T11)."""

    def __init__(self, plugin: plugin_api.CodeSource, ledger: OtpLedger, clock: Clock) -> None:
        self._plugin = plugin
        self._ledger = ledger
        self._clock = clock

    def has_seed(self, serial: str) -> bool:
        """Whether the plugin can give codes for ``serial``."""
        return self._plugin.has_seed(serial)

    def code_for(self, serial: str) -> tuple[str, float]:
        """A code for the first unused step and the seconds until that step starts."""

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
