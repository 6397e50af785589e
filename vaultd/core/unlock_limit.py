"""The rate limit on wrong token PINs sent to `vaultd unlock` (``docs/threat-model.md`` T9).

SoftHSM2 never locks a PIN, and a hardware token that does should not be locked by a script
guessing through vaultd: after :data:`MAX_FAILURES` wrong PINs within :data:`WINDOW` seconds,
further tries are refused (``RATE_LIMITED``, with ``retry_after``) without reaching the token.
"""

from __future__ import annotations

from vaultd.core.ports import Clock
from vaultd.errors import RateLimited

WINDOW = 300.0
MAX_FAILURES = 5


class UnlockLimiter:
    """Wrong-PIN failures in a sliding window of monotonic time."""

    def __init__(
        self, clock: Clock, *, window: float = WINDOW, max_failures: int = MAX_FAILURES
    ) -> None:
        self._clock = clock
        self._window = window
        self._max = max_failures
        self._failures: list[float] = []

    def check(self) -> int:
        """Raise ``RateLimited`` if the window is full; else the number of recent failures."""
        now = self._clock.monotonic()
        self._failures = [t for t in self._failures if now - t < self._window]
        if len(self._failures) >= self._max:
            retry = self._window - (now - self._failures[0])
            raise RateLimited(
                f"{len(self._failures)} wrong PINs in {self._window // 60:g} minutes: try again "
                f"in {retry:.0f} s",
                retry_after=retry,
            )
        return len(self._failures)

    def failed(self) -> None:
        """Count one wrong PIN, now."""
        self._failures.append(self._clock.monotonic())
