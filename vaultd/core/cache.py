"""The in-memory session cache, keyed by profile.

Expiry is judged on two clocks (docs/threat-model.md T15): the wall clock against STS's
``Expiration``, and the monotonic clock against the lifetime left when the entry was stored.
Whichever says "later" wins, so a wall clock stepped backwards never extends use past the STS
expiration. A session not served for ``idle_seconds`` (monotonic) is dropped too
(docs/threat-model.md T23: an approval does not outlive the intent); the STS expiration stays the
absolute limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from vaultd.core import serving
from vaultd.core.model import SessionCredentials
from vaultd.core.ports import Clock


@dataclass(frozen=True, slots=True)
class CacheEntry:
    """Non-secret facts about a cached session, for status displays."""

    key: str
    expiration: datetime
    seconds_left: float
    servable: bool


@dataclass(slots=True)
class _Stored:
    creds: SessionCredentials
    wall_at_put: datetime
    mono_at_put: float
    mono_last_use: float


DEFAULT_IDLE_SECONDS = 3600.0
"""Drop a cached session after an hour without a request for it."""


class SessionCache:
    """Sessions served only while the serving floor is met on both clocks."""

    def __init__(
        self,
        clock: Clock,
        *,
        floor: int = serving.SERVE_FLOOR_SECONDS,
        idle_seconds: float = DEFAULT_IDLE_SECONDS,
    ) -> None:
        self._clock = clock
        self._floor = serving.effective_floor(floor)
        self._idle = idle_seconds
        self._entries: dict[str, _Stored] = {}

    @property
    def floor(self) -> int:
        """Seconds a session must have left to be served."""
        return self._floor

    def _idle_out(self, key: str, stored: _Stored) -> bool:
        """Drop ``key`` and say so if it has not been served for the idle limit."""
        if self._clock.monotonic() - stored.mono_last_use < self._idle:
            return False
        del self._entries[key]
        return True

    def _now_for(self, stored: _Stored) -> datetime:
        """The later of the wall clock and the wall time implied by monotonic elapsed time."""
        elapsed = self._clock.monotonic() - stored.mono_at_put
        return max(self._clock.now(), stored.wall_at_put + timedelta(seconds=elapsed))

    def get(self, key: str) -> SessionCredentials | None:
        """The cached session for ``key`` if it has at least the floor left, else ``None``.

        Entries that have expired outright, or were not served for the idle limit, are
        dropped; serving one restarts its idle time.
        """
        stored = self._entries.get(key)
        if stored is None or self._idle_out(key, stored):
            return None
        now = self._now_for(stored)
        if stored.creds.seconds_left(now) <= 0:
            del self._entries[key]
            return None
        if not serving.servable(stored.creds, now, self._floor):
            return None
        stored.mono_last_use = self._clock.monotonic()
        return stored.creds

    def put(self, key: str, creds: SessionCredentials) -> bool:
        """Store ``creds`` under ``key``; refuse (return ``False``) if already below the floor."""
        now = self._clock.now()
        if not serving.servable(creds, now, self._floor):
            return False
        mono = self._clock.monotonic()
        self._entries[key] = _Stored(creds, now, mono, mono)
        return True

    def needs_refresh(self, key: str) -> bool:
        """Whether ``key`` should be refreshed now (missing, expiring or within the window)."""
        stored = self._entries.get(key)
        if stored is None or self._idle_out(key, stored):
            return True
        return serving.needs_refresh(stored.creds, self._now_for(stored), self._floor)

    def purge(self, key: str) -> None:
        """Drop the session for ``key`` (for example after STS said ExpiredToken)."""
        self._entries.pop(key, None)

    def wipe(self) -> None:
        """Drop every session (lock, sealing)."""
        self._entries.clear()

    def entries(self) -> list[CacheEntry]:
        """Status of every unexpired entry, sorted by key; no secrets."""
        out: list[CacheEntry] = []
        for key in sorted(self._entries):
            stored = self._entries[key]
            if self._idle_out(key, stored):
                continue
            now = self._now_for(stored)
            left = stored.creds.seconds_left(now)
            if left > 0:
                servable = serving.servable(stored.creds, now, self._floor)
                out.append(CacheEntry(key, stored.creds.expiration, left, servable))
        return out
